"""bench/: `bench.py --report-only` rebuilds report.md and the charts from the committed results.json
(no root, no dockerd, nothing measured), and the report never imports the runner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> Path:
    pytest.importorskip("matplotlib", reason="matplotlib is missing: the report's charts need it "
                        "(scripts/bench-deps.sh installs it)")
    out = tmp_path_factory.mktemp("bench-report")
    p = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--report-only", "--results",
                        str(BENCH / "results.json"), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert not (out / "results.json").exists()  # it only reads the results
    return out


def parts() -> list:
    """report.PARTS, imported as the runner does (bench/ on the path)."""
    code = "import json, report; print(json.dumps([[p.key, p.title] for p in report.PARTS]))"
    p = subprocess.run([sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_every_section_heading(rebuilt):
    text = (rebuilt / "report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    expected = ["# pynet benchmarks", "## Headlines", *(f"## {title}" for _, title in parts()),
                "## Daemon memory along the run", "## Not measured / left out"]
    assert headings == expected
    assert "Not measured in this run" not in text  # the committed run has every section


def test_every_measured_section_has_a_part():
    measured = set(json.loads((BENCH / "results.json").read_text())["sections"])
    assert measured <= {key for key, _ in parts()}


def test_charts(rebuilt):
    text = (rebuilt / "report.md").read_text()
    shown = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", text)
    assert len(shown) == len(set(shown)) == 8
    made = sorted(p.name for p in rebuilt.glob("*.png"))
    assert made == sorted(shown)
    assert made == sorted(p.name for p in BENCH.glob("*.png"))  # the committed charts
    for name in made:
        data = (rebuilt / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_same_as_committed_report(rebuilt):
    """The committed report.md is what the report code makes of the committed results.json: after a
    change to bench/report/, `make bench-report` and commit both."""
    assert (rebuilt / "report.md").read_text() == (BENCH / "report.md").read_text()


def test_report_does_not_import_the_runner():
    code = ("import sys, report; bad = {'bench', 'runner', 'common', 'daemon', 'measure'} & set(sys.modules); "
            "print(sorted(bad)); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"report imports runner modules: {p.stdout} {p.stderr}"
