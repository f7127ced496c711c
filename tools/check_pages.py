"""Check a built book: every page reads offline and carries only what it uses.

Usage: python tools/check_pages.py [_build/html]   (.ci/run calls it after the build; exit 1 lists each fault)

- no page loads anything from the network (no http(s) script, stylesheet or image source);
- no page carries sphinx-thebe (the book runs no live kernels; tools/lean_pages.py removes it);
- every image has alt text that describes it, not its file name.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path


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
    return found


def main(root: str = "_build/html") -> int:
    pages = sorted(Path(root).rglob("*.html"))
    if not pages:
        print(f"no pages under {root}: build the book first (jupyter-book build .)")
        return 1
    report = [f"{page}: {fault}" for page in pages if "_static" not in page.parts for fault in faults(page)]
    print("\n".join(report) or f"{len(pages)} pages: offline, no thebe, every image described")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
