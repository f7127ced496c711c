"""Check a built book: every page reads offline and carries only what it uses.

Usage: python tools/check_pages.py [_build/html]   (.ci/run calls it after the build; exit 1 lists each fault)

- no page loads anything from the network (no http(s) script, stylesheet or image source);
- no page carries sphinx-thebe (the book runs no live kernels; tools/lean_pages.py removes it);
- every image has alt text that describes it, not its file name;
- every figure (a PNG in _images) carries tvlib.plots' layout audit, and passes it at the column width: no text
  under 8 px as shown in a COLUMN_PX column (a wider PNG is shrunk to it), no labels on one another, no legend over
  data. A PNG without the audit was not drawn through tvlib.plots in a notebook;
- every figure and table a notebook cell shows links its numbers as a CSV (tvlib.book.download): a cell's output
  holds at least as many .csv download links as figures and tables, unless the cell is tagged `no-data` (a
  diagram, which has no numbers, or the worked example on a task of one's own, whose numbers are not kept).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path

COLUMN_PX = 676  # an image's width on a page at a 1280 px window, measured (python tools/page_widths.py --images)
MIN_TEXT_PX = 8
LAYOUT_KEY = b"tvlib-layout"  # tvlib.plots.LAYOUT_KEY: the tEXt chunk holding the figure's layout report


class _Page(HTMLParser):
    """Collects the page's asset URLs and its images' alt texts."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.images: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "img") and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.assets.append(a.get("href", ""))
        if tag == "img":
            self.images.append((a.get("src", ""), a.get("alt", "")))


def faults(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(text)
    found = [f"loads {url} from the network" for url in parsed.assets if re.match(r"(https?:)?//", url)]
    if "thebe" in text:
        found.append("carries sphinx-thebe")
    for src, alt in parsed.images:
        if len(alt.split()) < 4 or Path(src).stem in alt:
            found.append(f"image {src} has no descriptive alt text ({alt!r})")
        image = page.parent / src
        if image.suffix == ".png" and image.parent.name == "_images" and image.is_file():
            found += [f"figure {src}: {fault}" for fault in figure_faults(image)]
    return found + unlinked_outputs(text)


CELL = re.compile(r'<div class="cell( [^"]*)? docutils container">')
DOWNLOAD = re.compile(r'<a class="reference download internal"[^>]*href="[^"]+\.csv"')


def unlinked_outputs(text: str) -> list[str]:
    """Cells whose figures and tables outnumber their CSV download links (each cell from its opening tag to the
    next cell's), skipping cells tagged `no-data`."""
    found, starts = [], [m for m in CELL.finditer(text)]
    for i, start in enumerate(starts):
        if "tag_no-data" in (start.group(1) or ""):
            continue
        cell = text[start.start(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        output = cell.partition('class="cell_output')[2]
        shown = output.count("<img ") + output.count('<table class="dataframe')
        if shown > len(DOWNLOAD.findall(output)):
            found.append(f"cell {i + 1}: {shown} figure(s)/table(s) but {len(DOWNLOAD.findall(output))} CSV link(s)")
    return found


def png_layout(path: Path) -> tuple[int, dict | None]:
    """A PNG's pixel width (IHDR) and the layout report in its tvlib tEXt chunk (None without one)."""
    data, at, width, report = path.read_bytes(), 8, 0, None
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", body[:4])[0]
        elif kind == b"tEXt" and body.partition(b"\0")[0] == LAYOUT_KEY:
            report = json.loads(body.partition(b"\0")[2].decode("latin-1"))
        at += 12 + length  # length, type, body, CRC
    return width, report


def figure_faults(path: Path, column_px: int = COLUMN_PX) -> list[str]:
    """The figure's faults as shown in the column, from its own audit (tvlib.plots.report_faults applies the same)."""
    width, report = png_layout(path)
    if not report:
        return ["carries no layout audit (not drawn through tvlib.plots' notebook formatter)"]
    scale = min(1.0, column_px / width)
    small = [f"{n} text(s) at {px * scale:.1f} px in the {column_px} px column, under {MIN_TEXT_PX} (e.g. {text!r})"
             for px, n, text in report["fonts"] if px * scale < MIN_TEXT_PX]
    return small + report["overlaps"] + report["legends_over_data"]


def main(root: str = "_build/html") -> int:
    pages = sorted(Path(root).rglob("*.html"))
    if not pages:
        print(f"no pages under {root}: build the book first (jupyter-book build .)")
        return 1
    report = [f"{page}: {fault}" for page in pages if "_static" not in page.parts for fault in faults(page)]
    print("\n".join(report) or f"{len(pages)} pages: offline, no thebe, every image described, every figure legible"
                                f" at {COLUMN_PX} px, every figure and table linked to its CSV")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
