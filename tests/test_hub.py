"""`push_to_hub` -> `from_pretrained` round trips of longbird models, tokenizers and Trainer output.

The Hub is reached through `HF_ENDPOINT`; here it is a local in-memory server
(`tests/hub_server.py`, started per test on 127.0.0.1), so the tests run offline and exercise
the real huggingface_hub / transformers client code over HTTP. `test_real_hub_round_trip` runs the
same round trip against huggingface.co when `LONGBIRD_HUB_TOKEN` is set.
"""

import os
import subprocess
import sys
import textwrap
import uuid
from urllib.parse import urlsplit

import huggingface_hub
import huggingface_hub.hf_api
import pytest
import torch
import transformers
import transformers.utils.hub
from hub_server import LocalHub
from huggingface_hub import ModelCard, ModelCardData, constants
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import longbird
from longbird.tokenization import train_tokenizer

TEXTS = [
    "The river Nile flows north through Egypt.",
    "Paris is the capital of France.",
    "Long documents need sparse attention.",
]
REAL_HUB_TOKEN = os.environ.get("LONGBIRD_HUB_TOKEN")

#: runs in a fresh process where longbird cannot be imported: the model comes from the repo's code
LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["longbird"] = None  # as if longbird were not installed
    import torch, transformers
    repo_id, inputs_path, output_path = sys.argv[1:]
    model = transformers.AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True).eval()
    # trust_remote_code here too: AutoTokenizer first loads the config, whose auto_map points at the repo's code
    tokenizer = transformers.AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
    inputs = torch.load(inputs_path)
    ids = tokenizer(inputs.pop("texts"))["input_ids"]
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.save({"module": type(model).__module__, "logits": logits, "ids": ids}, output_path)
    """
)


def use_endpoint(monkeypatch, tmp_path, endpoint: str, token: str) -> None:
    """Point huggingface_hub and transformers at `endpoint`, with fresh caches under `tmp_path`.

    The env vars are what a fresh process (the remote-code subprocess) reads; this process's
    huggingface_hub read them at import, so the values it derived from them are patched too.
    (Remote code is only ever loaded in the subprocess, so transformers' import-time
    HF_MODULES_CACHE needs no patch here.)
    """
    home = tmp_path / "hf_home"
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HOME": home,
        "HF_HUB_CACHE": home / "hub",
        "HF_MODULES_CACHE": tmp_path / "hf_modules",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # every path under the HF home (token, caches, the agent-harness registry...), then the hub cache
    old_home = constants.HF_HOME
    for name, value in vars(constants).copy().items():
        if isinstance(value, str) and value.startswith(old_home) and not name.startswith("_"):
            monkeypatch.setattr(constants, name, str(home) + value[len(old_home) :])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname})
    # `huggingface_hub.upload_folder` & co. are methods of one HfApi built at import
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", endpoint)
    # transformers' push_to_hub / Trainer share a lazily built HfApi: rebuild it for this endpoint
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with LocalHub() as server:
        use_endpoint(monkeypatch, tmp_path, server.url, token="hf_local_dummy_token")
        yield server
    assert not server.unknown_requests, f"the client called routes the local hub lacks: {server.unknown_requests}"


def tiny_model() -> longbird.EtcForSequenceClassification:
    torch.manual_seed(0)
    config = longbird.EtcConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        local_radius=2,
        relative_pos_max_distance=2,
        relative_vocab_size=8,
        num_labels=2,
    )
    return longbird.EtcForSequenceClassification(config).eval()


def model_inputs(tokenizer) -> dict:
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def logits(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


def load_without_longbird(tmp_path, repo_id: str, inputs: dict) -> dict:
    """Load `repo_id` from the endpoint in a fresh process where `import longbird` fails."""
    torch.save({**inputs, "texts": TEXTS}, tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # HF_* as set by use_endpoint
    env["TRANSFORMERS_VERBOSITY"] = "error"
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, repo_id, str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL,  # a trust_remote_code prompt must not wait on a terminal
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / "out.pt")


def push_and_load_back(tmp_path, repo_id: str, private: bool | None = None) -> None:
    """push_to_hub a model and its tokenizer, then load both back: with longbird, and from the
    repo's own code without it."""
    model, tokenizer = tiny_model(), train_tokenizer(TEXTS * 5, vocab_size=80)
    model.push_to_hub(repo_id, private=private)
    tokenizer.push_to_hub(repo_id, private=private)
    inputs = model_inputs(tokenizer)
    expected = logits(model, inputs)

    loaded = AutoModelForSequenceClassification.from_pretrained(repo_id)
    assert type(loaded) is longbird.EtcForSequenceClassification
    torch.testing.assert_close(logits(loaded, inputs), expected, rtol=0, atol=0)
    assert AutoTokenizer.from_pretrained(repo_id)(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]

    got = load_without_longbird(tmp_path, repo_id, inputs)
    assert got["module"].startswith("transformers_modules"), got["module"]
    torch.testing.assert_close(got["logits"], expected)
    assert got["ids"] == tokenizer(TEXTS)["input_ids"]


def test_push_to_hub_then_from_pretrained(hub, tmp_path):
    push_and_load_back(tmp_path, "user/tiny-etc")
    repo = hub.repos["user/tiny-etc"]
    assert repo.commits == ["Upload EtcForSequenceClassification", "Upload tokenizer"]
    # weights, model card, tokenizer and the flat remote code all went up, the weights as a regular file
    assert {
        "config.json",
        "model.safetensors",
        "README.md",
        "tokenizer.json",
        "modeling_longbird_etc.py",
        "configuration_longbird_etc.py",
        "remote_code.py",
    } <= set(repo.files)
    # the subprocess got the flat remote code from the endpoint
    assert any(
        r.startswith("GET /user/tiny-etc/resolve/") and r.endswith("/modeling_longbird_etc.py") for r in hub.requests
    )
    # pushing the same model again is a no-op: the preupload oids match, so no empty commit is made
    tiny_model().push_to_hub("user/tiny-etc")
    assert len(repo.commits) == 2


def test_trainer_push_to_hub(hub, tmp_path):
    model = tiny_model()
    data = [{"input_ids": torch.randint(5, 100, (24,)), "labels": torch.tensor(i % 2)} for i in range(8)]
    args = transformers.TrainingArguments(
        tmp_path / "out",
        push_to_hub=True,
        hub_model_id="user/tiny-etc-trainer",
        report_to=[],
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data)  # creates the repo
    assert "user/tiny-etc-trainer" in hub.repos
    trainer.train()
    trainer.push_to_hub()

    repo = hub.repos["user/tiny-etc-trainer"]
    assert repo.commits == ["End of training"]
    assert {"model.safetensors", "training_args.bin", "modeling_longbird_etc.py"} <= set(repo.files)
    assert "generated_from_trainer" in repo.files["README.md"].decode()
    inputs = {"input_ids": torch.randint(5, 100, (2, 24))}
    loaded = AutoModelForSequenceClassification.from_pretrained("user/tiny-etc-trainer")
    torch.testing.assert_close(logits(loaded, inputs), logits(trainer.model, inputs), rtol=0, atol=0)
    assert not torch.equal(logits(tiny_model(), inputs), logits(loaded, inputs))  # the trained weights came back


def test_upload_folder_with_model_card(hub, tmp_path):
    """`save_pretrained` + longbird's ETC card template, pushed with huggingface_hub's own API."""
    model = tiny_model()
    model.save_pretrained(tmp_path / "folder")
    card = ModelCard.from_template(
        ModelCardData(license="apache-2.0", library_name="transformers", tags=["longbird"]),
        template_path=os.path.join(os.path.dirname(__file__), "..", "model_cards", "longbird_etc.md"),
        model_id="user/tiny-etc-card",
        local_radius=2,
    )
    card.save(tmp_path / "folder" / "README.md")
    huggingface_hub.create_repo("user/tiny-etc-card")
    huggingface_hub.upload_folder(repo_id="user/tiny-etc-card", folder_path=tmp_path / "folder")

    info = huggingface_hub.model_info("user/tiny-etc-card")
    assert info.sha == hub.repos["user/tiny-etc-card"].sha
    assert {s.rfilename for s in info.siblings} == {p.name for p in (tmp_path / "folder").iterdir()}
    pushed = ModelCard.load("user/tiny-etc-card")
    assert pushed.data.tags == ["longbird"] and "local radius 2 tokens" in pushed.text
    inputs = {"input_ids": torch.randint(5, 100, (2, 24))}
    loaded = AutoModelForSequenceClassification.from_pretrained("user/tiny-etc-card")
    torch.testing.assert_close(logits(loaded, inputs), logits(model, inputs), rtol=0, atol=0)


def test_missing_repo_or_file_is_a_clean_error(hub):
    with pytest.raises(OSError, match="not a valid model identifier"):
        AutoModelForSequenceClassification.from_pretrained("user/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("user/does-not-exist", "config.json")
    huggingface_hub.create_repo("user/empty")
    with pytest.raises(EntryNotFoundError):
        huggingface_hub.hf_hub_download("user/empty", "config.json")
    with pytest.raises((OSError, ValueError), match="config.json"):  # as for an empty local folder
        AutoModelForSequenceClassification.from_pretrained("user/empty")


@pytest.mark.skipif(
    not REAL_HUB_TOKEN,
    reason="real-Hub round trip is opt-in: set LONGBIRD_HUB_TOKEN to a huggingface.co write token "
    "(it pushes to <user>/longbird-test-<random>, loads it back, then deletes the repo)",
)
def test_real_hub_round_trip(monkeypatch, tmp_path):
    use_endpoint(monkeypatch, tmp_path, "https://huggingface.co", token=REAL_HUB_TOKEN)
    api = huggingface_hub.HfApi(token=REAL_HUB_TOKEN)
    repo_id = f"{api.whoami()['name']}/longbird-test-{uuid.uuid4().hex[:8]}"
    try:
        push_and_load_back(tmp_path, repo_id, private=True)
    finally:
        api.delete_repo(repo_id, missing_ok=True)


def test_recipe_push_to_hub_keeps_its_model_card(hub, tmp_path):
    """`longbird train ... --push_to_hub`: the pushed repo has the weights, the code and longbird's card with
    its model-index (Trainer's own card would otherwise replace it), and loads back from the repo id."""
    from huggingface_hub import ModelCard

    from longbird.tasks import sequence_classification

    rows = [
        {"text": t, "label": label}
        for t, label in [("the match was won", "sport"), ("the vote passed", "politics")] * 8
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"text": "{r["text"]}", "label": "{r["label"]}"}}\n' for r in rows))
    metrics = sequence_classification.main(
        [
            "--train_file",
            str(data),
            "--validation_file",
            str(data),
            "--train_tokenizer",
            "wordpiece",
            "--tokenizer_vocab_size",
            "60",
            "--config_overrides",
            "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,"
            "intermediate_size=64,block_size=8,max_position_embeddings=128",
            "--max_seq_length",
            "64",
            "--do_train",
            "--do_eval",
            "--max_steps",
            "2",
            "--output_dir",
            str(tmp_path / "out"),
            "--use_cpu",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--push_to_hub",
            "--hub_model_id",
            "user/tiny-recipe",
        ]
    )
    repo = hub.repos["user/tiny-recipe"]
    assert {"model.safetensors", "tokenizer.json", "modeling_longbird_bigbird.py"} <= set(repo.files)
    card = ModelCard(repo.files["README.md"].decode())
    accuracy = {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"]
    assert accuracy == pytest.approx(metrics["eval_accuracy"], abs=1e-4)
    loaded = AutoModelForSequenceClassification.from_pretrained("user/tiny-recipe")
    assert loaded.config.id2label == {0: "politics", 1: "sport"}
