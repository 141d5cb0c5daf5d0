"""Every Python snippet in README.md runs as a newcomer would copy it, within a laptop's means.

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

README = Path(__file__).resolve().parents[1] / "README.md"
PEAK_LIMIT_MIB = 2048
_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)

# appended to each snippet: report the interpreter's own peak memory and wall time
_REPORT = """
import resource as _resource, time as _time
print("SNIPPET_PEAK_KIB", _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss)
print("SNIPPET_SECONDS", _time.perf_counter() - _snippet_start)
"""


def readme_snippets() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block in README.md."""
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_readme_has_snippets():
    assert len(readme_snippets()) >= 3


@pytest.mark.parametrize("line, code", readme_snippets(), ids=[f"README.md:{line}" for line, _ in readme_snippets()])
def test_readme_snippet_runs(line: int, code: str, tmp_path: Path):
    program = "import time as _t; _snippet_start = _t.perf_counter()\n" + textwrap.dedent(code) + _REPORT
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stderr[-3000:]}"
    report = dict(re.findall(r"^(SNIPPET_\w+) (\S+)$", result.stdout, flags=re.MULTILINE))
    peak_mib = int(report["SNIPPET_PEAK_KIB"]) / 1024
    print(f"README.md:{line}: {float(report['SNIPPET_SECONDS']):.1f} s, peak {peak_mib:.0f} MiB")
    assert peak_mib <= PEAK_LIMIT_MIB, f"README.md:{line} peaks at {peak_mib:.0f} MiB (limit {PEAK_LIMIT_MIB})"
