"""What a page is made of besides its figures: computed prose as Markdown, a CSV behind each table and figure, the
verdicts at a glance, and the record of which stored results a page read (the Provenance page)."""

import json
import re

import pandas as pd

from tvlib import book, claims, provenance, readings, store
from tvlib.runs import Runner
from tvlib.verdicts import Verdict


def test_computed_tokens_stay_text_but_roles_and_code_are_untouched():
    text = "starts with '<bos>', ICL < 0.2, {doc}`chapter 3 <03_accuracy>` and `<eos>`"
    assert book._literal_tags(text) == "starts with '&lt;bos>', ICL < 0.2, {doc}`chapter 3 <03_accuracy>` and `<eos>`"


def test_download_writes_the_shown_table_and_links_it_relative_to_the_page(tmp_path, monkeypatch, capsys):
    page_dir = tmp_path / "chapters"
    page_dir.mkdir()
    monkeypatch.chdir(page_dir)
    frame = pd.DataFrame({"task": ["a", "b"], "accuracy": [0.5, 0.25]}).set_index("task")
    book.download(frame, tmp_path / "results" / "m" / "pages", "03_table")
    written = tmp_path / "results" / "m" / "pages" / "03_table.csv"
    assert pd.read_csv(written).to_dict("list") == {"task": ["a", "b"], "accuracy": [0.5, 0.25]}  # index kept
    assert "{download}`Download the data (03_table.csv) </results/m/pages/03_table.csv>`" in " ".join(
        capsys.readouterr().out.split())
    before = written.read_bytes()
    book.download(frame, tmp_path / "results" / "m" / "pages", "03_table")
    assert written.read_bytes() == before  # the same table gives the same file


def _verdict(number: int, outcome: str, headline: str) -> Verdict:
    return Verdict(number, f"claim {number} in words", outcome, "numbers", (), headline)


def test_glance_has_a_row_per_claim_with_each_models_outcome_and_a_chapter_link():
    found = {"m1": [_verdict(1, "holds", "keeps 0.90"), _verdict(2, "cannot be decided", "tied")],
             "m2": [_verdict(1, "does not hold", "keeps 0.50"), _verdict(2, "holds", "depth 0.5")]}
    table = readings.glance(found, {1: "holds for 7 of 7", 2: "holds for 3 of 3"}, claims.CHAPTERS)
    rows = table.splitlines()
    assert rows[0] == "| claim | m1 | m2 | the paper's numbers, same rule |" and len(rows) == 4
    assert "{doc}`chapter 3 <03_accuracy>`" in rows[2] and "**holds**: keeps 0.90" in rows[2]
    assert "**does not hold**: keeps 0.50" in rows[2] and rows[3].endswith("| holds for 3 of 3 |")


def test_every_claim_check_gives_a_headline():
    found = claims.check(Runner("gemma-3-270m", stored_only=True), n_boot=50)
    assert [v.number for v in found] == [1, 2, 3, 4, 5] and all(v.headline for v in found)


def test_provenance_lists_what_a_page_read_with_versions_and_time(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    config = {"model": "m", "experiment": "main", "task": "t", "protocol": {"demos": 5, "n_dev": 4, "n_test": 4,
                                                                            "seed": 41}}
    monkeypatch.setattr(store, "READS", [])
    store.cached(folder / "main" / "t.csv", config, lambda: pd.DataFrame({"x": [1]}))
    outside = tmp_path / "other" / "main" / "t.csv"
    store.cached(outside, config, lambda: pd.DataFrame({"x": [2]}))
    runner = Runner("m", results_dir=tmp_path, stored_only=True)
    assert provenance.record("03_accuracy", runner) is None  # a page's last cell prints nothing
    record = runner.place("pages") / f"03_accuracy{provenance.READS_SUFFIX}"
    assert json.loads(record.read_text()) == {"page": "03_accuracy", "results": ["main/t.csv"]}
    (tmp_path / "m2" / "main").mkdir(parents=True)  # a second model with nothing stored
    table = provenance.table(["m", "m2"], tmp_path, recorded_on="m").set_index("model")
    assert table.loc["m", "results"] == "1 of 1" and table.loc["m2", "results"] == "0 of 1"
    assert "torch" in table.loc["m", "versions"] and table.loc["m", "protocols"] == "5 demos, 4/4 dev/test, seed 41"
    assert re.search(r"(\b1 thread|\d+ threads)$", table.loc["m", "compute time"])
    assert "1 threads" not in table.loc["m", "compute time"] and table.loc["m2", "compute time"] == "not recorded"
