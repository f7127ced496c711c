"""tools/check_pages.py, which .ci/run applies to the built book, flags what it promises to flag."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("check_pages", Path(__file__).parents[1] / "tools" / "check_pages.py")
check_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_pages)


def _page(tmp_path: Path, body: str) -> Path:
    page = tmp_path / "page.html"
    page.write_text(f"<html><head></head><body>{body}</body></html>", encoding="utf-8")
    return page


def test_a_clean_page_passes(tmp_path):
    page = _page(tmp_path, '<script src="_static/x.js"></script>'
                           '<img src="_images/ab12.png" alt="Bars of accuracy per task, with intervals">')
    assert check_pages.faults(page) == []


def test_network_assets_thebe_and_bare_images_are_flagged(tmp_path):
    page = _page(tmp_path, '<script src="https://unpkg.com/thebe@0.8.2/lib/index.js"></script>'
                           '<link rel="stylesheet" href="//cdn.example/x.css">'
                           '<img src="_images/ab12.png" alt="ab12"><img src="_images/cd34.png">')
    found = check_pages.faults(page)
    assert sum("from the network" in f for f in found) == 2
    assert "carries sphinx-thebe" in found
    assert sum("no descriptive alt" in f for f in found) == 2


def _cell(tags: str, output: str) -> str:
    return (f'<div class="cell{tags} docutils container"><div class="cell_input">x</div>'
            f'<div class="cell_output docutils container">{output}</div></div>')


def test_a_figure_or_table_without_its_csv_link_is_flagged(tmp_path):
    link = '<a class="reference download internal" download="" href="../_downloads/ab/03_x.csv">CSV</a>'
    table = '<table class="dataframe"><tr><td>1</td></tr></table>'
    figure = '<img src="_images/ab12.png" alt="Bars of accuracy per task, with intervals">'
    assert check_pages.unlinked_outputs(_cell("", table + link) + _cell(" tag_hide-input", figure + link)) == []
    found = check_pages.unlinked_outputs(_cell("", table) + _cell("", table + link + table) + _cell("", figure))
    assert found == ["cell 1: 1 figure(s)/table(s) but 0 CSV link(s)", "cell 2: 2 figure(s)/table(s) but 1 CSV link(s)",
                     "cell 3: 1 figure(s)/table(s) but 0 CSV link(s)"]
    assert check_pages.unlinked_outputs(_cell(" tag_no-data", figure)) == []  # a diagram has no numbers
