"""The package boundary: a wheel installed (not editable) into a fresh environment works from another folder.

The fresh environment gets tvlib from the wheel only; its dependencies (torch, transformers, ...) come from this
environment's site-packages through a .pth line, which adds the folder but not the editable install's finder.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tvlib import paths
from tvlib.tiny import save_tiny

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env_python: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(env_python), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "HF_HUB_OFFLINE": "1",
                               "TVLIB_CACHE": str(paths.cache_dir())})  # the converted default model, not again
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """A fresh venv holding tvlib from a wheel built from this checkout; returns (its python, a work folder)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy, so the build's own folders (build/, *.egg-info) stay out of the checkout
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "tvlib", "data"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy2
        copy(REPO / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (REPO / part).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")], check=True, timeout=120)
    python = root / "env" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    wheel = next((root / "wheel").glob("tvlib-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = root / "elsewhere"
    work.mkdir()
    return python, work


def test_the_installed_package_is_the_wheel_and_lists_the_18_tasks(installed):
    python, work = installed
    where = _run(["-c", "import tvlib, tvlib.paths as p; print(tvlib.__file__); print(p.data_dir())"], work, python)
    package, data = where.stdout.split()
    assert str(REPO) not in package and str(REPO) not in data and Path(data).parent == Path(package).parent
    listing = _run(["-m", "tvlib", "tasks", "--json"], work, python).stdout
    tasks = [json.loads(line) for line in listing.splitlines()]
    assert len(tasks) == 18 and {t["name"] for t in tasks} >= {"algorithmic_to_upper", "knowledge_country_capital"}


def test_the_installed_package_evaluates_a_task_into_the_working_folder(installed, tmp_path):
    python, work = installed
    model = save_tiny("llama", tmp_path / "tiny-llama", layers=2)
    done = _run(["-m", "tvlib", "evaluate", "--model", str(model), "--task", "algorithmic_to_upper", "--n-dev", "2",
                 "--n-test", "2", "--n-baseline", "2", "--json", "--out", "predictions.csv"], work, python)
    row = json.loads(done.stdout.splitlines()[-1])
    assert row["task"] == "algorithmic_to_upper" and 0 <= row["hypothesis"] <= 1
    written = (work / "predictions.csv").read_text().splitlines()
    assert written[0].startswith("task,") and len(written) > 2  # every prediction, in the folder it ran from


def test_each_place_follows_its_environment_variable(tmp_path, monkeypatch):
    from tvlib.errors import TvlibError
    from tvlib.runs import Runner

    assert paths.in_checkout() and paths.results_dir() == REPO / "results" and paths.tasks_dir() == REPO / "data" / "tasks"
    monkeypatch.setenv("TVLIB_RESULTS", str(tmp_path / "mine"))
    monkeypatch.setenv("TVLIB_CACHE", str(tmp_path / "cache"))
    assert Runner("some/model").folder == tmp_path / "mine" / "some__model"
    assert paths.cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("TVLIB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(TvlibError, match="TVLIB_DATA"):
        paths.tasks_dir()
