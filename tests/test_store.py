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


def test_a_gz_name_is_stored_compressed_reproducibly_and_read_back_alike(tmp_path):
    import gzip

    plain = store.save(tmp_path / "plain.csv", FRAME, {"k": 1})
    for name in ("a.csv.gz", "b.csv.gz"):
        pd.testing.assert_frame_equal(store.save(tmp_path / name, FRAME, {"k": 1}), plain)
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()  # no timestamp inside
    assert gzip.decompress((tmp_path / "a.csv.gz").read_bytes()) == (tmp_path / "plain.csv").read_bytes()
    assert (tmp_path / "a.json").exists() and not (tmp_path / "a.csv.json").exists()
    pd.testing.assert_frame_equal(store.load(tmp_path / "a.csv.gz", {"k": 1}), FRAME)
    with pytest.raises(TvlibError, match="other settings"):
        store.cached(tmp_path / "a.csv.gz", {"k": 2}, lambda: FRAME)


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



def test_two_processes_on_one_folder_compute_once_and_a_killed_run_resumes_to_the_same_bytes(tmp_path):
    """Process A holds the folder while computing; B waits, then reuses A's result. A run killed with SIGKILL
    mid-way, run again, writes the same bytes as a run never interrupted."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = textwrap.dedent("""
        import sys, time
        import pandas as pd
        from pathlib import Path
        from tvlib import store
        folder, tag, sleep = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
        def compute(i):
            def run():
                print(f"{tag} computes {i}", flush=True)
                time.sleep(sleep)
                return pd.DataFrame({"i": [i] * 3, "x": [i / 3, i / 7, i / 11]})
            return run
        for i in range(3):
            store.cached(folder / f"part{i}.csv", {"part": i}, compute(i))
    """)
    folder = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, "-c", script, str(folder), "A", "1.0"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.run([sys.executable, "-c", script, str(folder), "B", "0"], capture_output=True, text=True)
    out_a = first.communicate()[0]
    assert out_a.count("computes") + second.stdout.count("computes") == 3  # every part computed once, by one
    assert "B computes 0" not in second.stdout  # B waited for A's part 0, then reused it

    killed = tmp_path / "killed"
    victim = subprocess.Popen([sys.executable, "-c", script, str(killed), "K", "1.5"], stdout=subprocess.PIPE,
                              text=True)
    while not (killed / "part0.json").exists():
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    subprocess.run([sys.executable, "-c", script, str(killed), "K", "0"], check=True, capture_output=True)
    assert _results(killed) == _results(folder)


def test_two_processes_on_different_results_of_one_folder_do_not_wait_on_each_other(tmp_path):
    """Locks are per result file: A computing its parts never holds up B computing others in the same folder, so
    their compute spans overlap; and both store what one process alone would."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys, time
        import pandas as pd
        from pathlib import Path
        from tvlib import store
        folder, first = Path(sys.argv[1]), int(sys.argv[2])
        for i in range(first, first + 2):
            def run(i=i):
                start = time.time()
                time.sleep(0.8)
                print(f"{i} {start} {time.time()}", flush=True)
                return pd.DataFrame({"i": [i] * 3, "x": [i / 3, i / 7, i / 11]})
            store.cached(folder / f"part{i}.csv", {"part": i}, run)
    """)
    folder = tmp_path / "shared"
    workers = [subprocess.Popen([sys.executable, "-c", script, str(folder), str(first)], stdout=subprocess.PIPE,
                                text=True) for first in (0, 2)]
    spans = [[tuple(map(float, line.split()[1:])) for line in w.communicate()[0].splitlines()] for w in workers]
    assert all(w.returncode == 0 for w in workers) and [len(s) for s in spans] == [2, 2]
    # some compute of A's ran at the same time as one of B's (one lock for the folder would serialise them all)
    assert any(a0 < b1 and b0 < a1 for a0, a1 in spans[0] for b0, b1 in spans[1])

    alone = tmp_path / "alone"
    for first in (0, 2):
        subprocess.run([sys.executable, "-c", script, str(alone), str(first)], check=True, capture_output=True)
    assert _results(alone) == _results(folder)


def _results(folder):
    """Every file's bytes, a manifest's measured compute time aside (the seconds differ from run to run; the
    CSV, its key and its hash may not)."""
    import json

    found = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".lock"):  # the per-result locks: empty, and nothing to compare
            assert p.read_bytes() == b""
            continue
        found[p.name] = p.read_bytes()
        if p.suffix == ".json":
            meta = json.loads(found[p.name])
            assert meta.pop("computed")["seconds"] >= 0
            found[p.name] = meta
    return found
