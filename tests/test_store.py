"""Results on disk: reused for the same config, never overwritten by another, never trusted when damaged."""

import pandas as pd
import pytest

from tvlib import store
from tvlib.errors import TvlibError

FRAME = pd.DataFrame({"task": ["a", "b"], "prediction": ["NA", "null"], "correct": [True, False], "x": [0.1, 1 / 3]})


def test_a_stored_result_is_reused_for_the_same_config(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return FRAME

    path = tmp_path / "main" / "t.csv"
    first = store.cached(path, {"seed": 1}, compute)
    second = store.cached(path, {"seed": 1}, compute)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, second)
    assert second["prediction"].tolist() == ["NA", "null"]  # strings stay strings
    with pytest.raises(TvlibError, match=r"other settings \(seed\)"):
        store.cached(path, {"seed": 2}, compute)  # never overwritten silently
    assert len(calls) == 1 and store.load(path, {"seed": 1}) is not None
    store.cached(tmp_path / "elsewhere" / "t.csv", {"seed": 2}, compute)  # kept apart, it is computed
    assert len(calls) == 2


def test_the_same_frame_gives_the_same_bytes(tmp_path):
    store.save(tmp_path / "a.csv", FRAME, {"k": 1})
    store.save(tmp_path / "b.csv", FRAME.copy(), {"k": 1})
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_a_damaged_or_half_written_result_is_recomputed(tmp_path):
    path = tmp_path / "t.csv"
    store.save(path, FRAME, {"k": 1})
    path.write_bytes(path.read_bytes()[:20])
    assert store.load(path, {"k": 1}) is None
    path.with_suffix(".json").unlink()
    assert store.load(path, {"k": 1}) is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_slug_of_hub_ids_and_paths(tmp_path):
    assert store.slug("EleutherAI/pythia-6.9b") == "EleutherAI__pythia-6.9b"
    assert store.slug(str(tmp_path)) == tmp_path.name

