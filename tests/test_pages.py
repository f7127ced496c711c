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
