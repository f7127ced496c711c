"""The GitHub workflows lint clean (actionlint, pinned in requirements.txt) and call what the project documents."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def test_actionlint_finds_nothing():
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.fail("actionlint is missing: pip install -r requirements.txt")
    done = subprocess.run([actionlint, "-no-color"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflows_run_the_documented_commands():
    tests = (WORKFLOWS / "tests.yml").read_text()
    book = yaml.safe_load((WORKFLOWS / "gpu-book.yml").read_text())
    pages = (WORKFLOWS / "pages.yml").read_text()
    assert "bash .ci/run" in tests
    steps = "\n".join(step.get("run", "") for step in book["jobs"]["book"]["steps"])
    assert "python -m tvlib run-book" in steps and "--build" in steps
    assert set(book["jobs"]["book"]["strategy"]["matrix"]["model"]) >= {"EleutherAI/gpt-j-6b", "huggyllama/llama-7b"}
    assert "jupyter-book build . -W" in pages and "deploy-pages" in pages
