"""A tiny in-memory stand-in for the Hugging Face Hub HTTP API, for tests.

`LocalHub()` starts a `ThreadingHTTPServer` on 127.0.0.1 (a free port) in a background thread;
point huggingface_hub at `hub.url` (see `tests/test_hub.py`) and `push_to_hub`, `upload_folder`,
`create_repo`, `hf_hub_download` and `from_pretrained` talk to it as they would to the Hub.
Stdlib only.

What it covers (model repos, one branch `main`, the wire formats of the installed
huggingface_hub client):

- `POST /api/repos/create` (409 + `url` when the repo exists, which `exist_ok=True` accepts),
  `DELETE /api/repos/delete`, `GET /api/whoami-v2`, `POST /api/validate-yaml` (always valid),
  `GET /api/agent-harnesses` (an empty registry);
- `GET /api/models/{repo}[/revision/{rev}]`: model info with `sha` and `siblings`;
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file listing (`list_repo_tree`);
- `POST /api/models/{repo}/preupload/{rev}`: every file gets `uploadMode: "regular"` (so the
  client sends contents inline, base64, in the commit; no LFS or Xet upload happens) plus the
  `oid` (git blob sha1) of the file already stored, so unchanged files are skipped;
- `POST /api/models/{repo}/commit/{rev}`: the NDJSON commit (`header`, `file`, `deletedFile`,
  `deletedFolder`); each commit gets a new sha;
- `GET|HEAD /{repo}/resolve/{rev}/{path}` with `ETag` (git blob sha1), `X-Repo-Commit` and
  `Content-Length`; 404s carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`,
  `EntryNotFound`) so the client raises the same errors as against the Hub.

What it does not cover: authentication (any token, or none, is accepted; there are no private
repos), LFS / Xet storage (`lfsFile` entries are refused), git history (only the latest files
and sha are kept; a revision is `main` or the current sha), branches, tags, pull requests and
discussions, dataset / space repos, Range requests, pagination, rate limits. Requests it does not
know are answered 404 and recorded in `hub.unknown_requests`, so tests can assert that the
client asked for nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

USER = "user"  #: the account every token belongs to


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub uses as ETag / oid of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    sha: str = hashlib.sha1(b"empty repo").hexdigest()  # the Hub also gives new repos an initial commit
    commits: list[str] = field(default_factory=list)  #: commit summaries, oldest first


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


class LocalHub:
    """The server and its state; usable as a context manager (`with LocalHub() as hub:`)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  #: "METHOD /path" of every request
        self.unknown_requests: list[str] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: a free port
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="local-hub", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- routes -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, dict, bytes | dict | list]:
        """-> (status, headers, body); a dict / list body is sent as JSON."""
        with self._lock:
            self.requests.append(f"{method} {path}")
            parts = [unquote(part) for part in path.strip("/").split("/")]  # "refs%2Fpr%2F1" stays one part
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo(json.loads(body))
            if method == "DELETE" and path == "/api/repos/delete":
                payload = json.loads(body)
                repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
                self._repo(repo_id)
                del self.repos[repo_id]
                return 200, {}, {}
            if method == "GET" and path == "/api/whoami-v2":
                return 200, {}, {"type": "user", "name": USER, "orgs": [], "auth": {"type": "access_token"}}
            if method == "GET" and path == "/api/agent-harnesses":  # user-agent tagging; empty registry
                return 200, {}, {"standardEnvVars": [], "harnesses": {}}
            if method == "POST" and path == "/api/validate-yaml":
                return 200, {}, {"errors": [], "warnings": []}
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id, rest = "/".join(parts[2:4]), parts[4:]
                if method == "GET" and (rest == [] or rest[:1] == ["revision"] and len(rest) == 2):
                    return self._model_info(repo_id, rest[1] if rest else "main")
                if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query.get("recursive") == ["true"])
                if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                    return self._preupload(repo_id, rest[1], json.loads(body))
                if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                    if "create_pr" in query:
                        raise HubError(400, "pull requests are not supported by the local hub")
                    return self._commit(repo_id, rest[1], body)
            if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            self.unknown_requests.append(f"{method} {path}")
            raise HubError(404, f"the local hub does not implement {method} {path}")

    def _repo(self, repo_id: str, revision: str | None = None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        if revision is not None and revision not in ("main", repo.sha):
            raise HubError(404, f"Revision {revision} not found", "RevisionNotFound")
        return repo

    def _create_repo(self, payload: dict) -> tuple:
        if payload.get("type", "model") != "model":
            raise HubError(400, "the local hub only has model repos")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": url}
        self.repos[repo_id] = Repo()
        return 200, {}, {"url": url, "name": repo_id}

    def _model_info(self, repo_id: str, revision: str) -> tuple:
        repo = self._repo(repo_id, revision)
        siblings = [{"rfilename": path} for path in sorted(repo.files)]
        return (
            200,
            {},
            {
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": repo.sha,
                "private": False,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": siblings,
            },
        )

    def _tree(self, repo_id: str, revision: str, folder: str, recursive: bool) -> tuple:
        repo = self._repo(repo_id, revision)
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries, folders = [], set()
        for path, data in sorted(repo.files.items()):
            if not path.startswith(prefix):
                continue
            head, _, tail = path[len(prefix) :].partition("/")
            if tail and not recursive:
                folders.add(prefix + head)
                continue
            entries.append({"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)})
        if prefix and not entries and not folders:
            raise HubError(404, f"{folder} not found", "EntryNotFound")
        entries += [{"type": "directory", "path": path, "oid": "0" * 40} for path in sorted(folders)]
        return 200, {}, entries

    def _preupload(self, repo_id: str, revision: str, payload: dict) -> tuple:
        repo = self._repo(repo_id, revision)
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha1(repo.files[f["path"]]) if f["path"] in repo.files else None,
            }
            for f in payload["files"]
        ]
        return 200, {}, {"files": files, "commitOid": repo.sha}

    def _commit(self, repo_id: str, revision: str, body: bytes) -> tuple:
        repo = self._repo(repo_id, revision)
        files = dict(repo.files)
        summary = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
                parent = value.get("parentCommit")
                if parent and not repo.sha.startswith(parent):
                    raise HubError(412, f"parent commit {parent} is not the head of main ({repo.sha})")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"unsupported encoding {value['encoding']!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:  # lfsFile: we never ask for LFS uploads
                raise HubError(400, f"commit entries of kind {key!r} are not supported by the local hub")
        repo.files = files
        repo.sha = hashlib.sha1(repo.sha.encode() + body).hexdigest()
        repo.commits.append(summary)
        return (
            200,
            {},
            {
                "commitUrl": f"{self.url}/{repo_id}/commit/{repo.sha}",
                "commitOid": repo.sha,
                "pullRequestUrl": None,
                "success": True,
            },
        )

    def _resolve(self, repo_id: str, revision: str, path: str) -> tuple:
        repo = self._repo(repo_id, revision)
        headers = {"X-Repo-Commit": repo.sha}
        if path not in repo.files:
            raise HubError(404, f"{path} not found in {repo_id}", "EntryNotFound", headers)
        data = repo.files[path]
        return 200, {**headers, "ETag": f'"{git_blob_sha1(data)}"', "Content-Type": "application/octet-stream"}, data


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, headers, payload = self.hub.handle(self.command, url.path, parse_qs(url.query), body)
        except HubError as error:
            status, headers, payload = error.status, dict(error.headers), {"error": str(error)}
            if error.code:
                headers["X-Error-Code"] = error.code
            headers["X-Error-Message"] = str(error)
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format, *args) -> None:  # the request log is `hub.requests`
        pass
