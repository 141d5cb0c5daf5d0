"""Every Python snippet in README.md and docs/ runs as a newcomer would copy it, within a laptop's means.

Each ```python block is run on its own in a fresh interpreter (in a temporary folder, so files it
writes go nowhere), and must finish without error within 2 GiB of peak memory. Its wall time is
printed (`pytest -s`) rather than asserted: timings belong to benchmarks, not tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PEAK_LIMIT_MIB = 2048
_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)

# appended to each snippet: report the interpreter's own peak memory and wall time
_REPORT = """
import resource as _resource, time as _time
print("SNIPPET_PEAK_KIB", _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss)
print("SNIPPET_SECONDS", _time.perf_counter() - _snippet_start)
"""


def snippets() -> list[tuple[str, str]]:
    """("file:line", code) of every ```python block in README.md and docs/*.md."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        name = document.relative_to(ROOT).as_posix()
        found += [(f"{name}:{text[: m.start()].count(chr(10)) + 1}", m.group(1)) for m in _BLOCK.finditer(text)]
    return found


def test_readme_has_snippets():
    assert sum(place.startswith("README.md:") for place, _ in snippets()) >= 2
    assert len(snippets()) >= 5


@pytest.mark.parametrize("line, code", snippets(), ids=[place for place, _ in snippets()])
def test_readme_snippet_runs(line: str, code: str, tmp_path: Path):
    program = "import time as _t; _snippet_start = _t.perf_counter()\n" + textwrap.dedent(code) + _REPORT
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{line} failed:\n{result.stderr[-3000:]}"
    report = dict(re.findall(r"^(SNIPPET_\w+) (\S+)$", result.stdout, flags=re.MULTILINE))
    peak_mib = int(report["SNIPPET_PEAK_KIB"]) / 1024
    print(f"{line}: {float(report['SNIPPET_SECONDS']):.1f} s, peak {peak_mib:.0f} MiB")
    assert peak_mib <= PEAK_LIMIT_MIB, f"{line} peaks at {peak_mib:.0f} MiB (limit {PEAK_LIMIT_MIB})"
