"""Checks on the task data in data/tasks (fast, no model needed)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tvlib.tasks import task_names

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "data" / "tasks"
BUILD = ROOT / "data" / "build.py"
REQUIREMENTS = ROOT / "requirements-build.txt"

TASKS = [task for task in task_names() if not task.startswith("algorithmic_")]  # the 12 built from data packages
KNOWLEDGE = [task for task in TASKS if task.startswith("knowledge_")]
MIN_PAIRS = 100
MAX_SHARE = 0.4


def load(task: str) -> list[dict]:
    return json.loads((TASKS_DIR / f"{task}.json").read_text(encoding="utf-8"))


def clean(text: object) -> bool:
    return isinstance(text, str) and text != "" and text == text.strip()


def test_no_unexpected_task_files():
    assert sorted(p.stem for p in TASKS_DIR.glob("*.json")) == sorted(TASKS) and len(TASKS) == 12  # 18 minus 6 in code


@pytest.mark.parametrize("task", TASKS)
def test_task_file_format(task):
    path = TASKS_DIR / f"{task}.json"
    assert path.is_file(), f"missing {path}"
    raw = path.read_bytes()
    records = json.loads(raw.decode("utf-8"))
    # exactly the bytes the build writes
    assert raw == (json.dumps(records, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    assert isinstance(records, list) and records
    for record in records:
        assert isinstance(record, dict)
        assert set(record) in ({"input", "output"}, {"input", "output", "accept"}), record
        assert clean(record["input"]) and clean(record["output"]), record
        if "accept" in record:
            accept = record["accept"]
            assert isinstance(accept, list) and accept, record
            assert all(clean(alt) for alt in accept), record
            assert len(set(accept)) == len(accept) and record["output"] not in accept, record


@pytest.mark.parametrize("task", TASKS)
def test_sorted_and_unique_inputs(task):
    inputs = [record["input"] for record in load(task)]
    assert inputs == sorted(inputs)
    assert len(set(inputs)) == len(inputs)


@pytest.mark.parametrize("task", TASKS)
def test_enough_pairs(task):
    assert len(load(task)) >= MIN_PAIRS


@pytest.mark.parametrize("task", KNOWLEDGE)
def test_no_dominant_answer(task):
    records = load(task)
    answer, count = Counter(record["output"] for record in records).most_common(1)[0]
    assert count <= MAX_SHARE * len(records), f"{answer!r}: {count} of {len(records)}"


def test_translation_directions_are_consistent():
    for lang in ("fr", "es"):
        forward = {r["input"]: r for r in load(f"translation_en_{lang}")}
        backward = load(f"translation_{lang}_en")
        for record in backward:
            english = [record["output"], *record.get("accept", [])]
            assert any(forward.get(word, {}).get("output") == record["input"] for word in english), record


def build_requirements() -> list[str]:
    names = []
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-]+", line), f"unpinned: {line}"
            names.append(line.split("==", 1)[0])
    return names


def test_build_requirements_pinned():
    assert build_requirements()


def test_build_is_deterministic(tmp_path):
    for name in build_requirements():
        if importlib.util.find_spec(name.lower().replace("-", "_")) is None:
            pytest.skip(f"build-time package {name} is not installed (pip install -r requirements-build.txt)")
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    built = sorted(p.name for p in tmp_path.glob("*.json"))
    assert built == sorted(f"{task}.json" for task in TASKS)
    for name in built:
        assert (tmp_path / name).read_bytes() == (TASKS_DIR / name).read_bytes(), f"{name} differs from the build"


def test_the_data_cards_several_token_table_is_what_its_script_writes():
    """data/README.md's table of answers of several tokens per offline tokenizer cannot drift from the stored
    tables that decide which tasks the Several tokens chapter runs on (`multitoken.split_tasks`); the default
    model's stored table is what its tokenizer gives now."""
    from tvlib import multitoken
    from tvlib.models import DEFAULT_MODEL, load_tokenizer
    from tvlib.runs import Runner

    spec = importlib.util.spec_from_file_location("several_tokens", ROOT / "data" / "several_tokens.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    card = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    section = card.split(script.BEGIN, 1)[1].split(script.END, 1)[0].strip()
    assert section == script.table()
    assert "translation_en_es" in section.split("chapter runs on", 1)[1]  # a task that splits is named
    stored = Runner(DEFAULT_MODEL, stored_only=True).answer_lengths()
    pd.testing.assert_frame_equal(stored, multitoken.answer_lengths(load_tokenizer(DEFAULT_MODEL), task_names()),
                                  check_dtype=False)
