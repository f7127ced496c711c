"""Which parts of each built page scroll sideways at a window width (headless Chromium; needs `chromium`).

Usage: python tools/page_widths.py [--width 1280] [--images] _build/html/chapters/*.html
Prints every table, code box or output that is wider than its box, and exits 1 if there is one; with --images, also
each image's width as shown against its PNG's own (tools/check_pages.py's COLUMN_PX: the shown width at 1280). A
probe script is injected into a temporary copy of each page (beside it, so its assets resolve), which reports after
the page loaded.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const out = [];
  document.querySelectorAll('main *').forEach(el => {
    const s = getComputedStyle(el);
    if (!['auto','scroll'].includes(s.overflowX) && el.tagName !== 'TABLE') return;
    if (el.scrollWidth > el.clientWidth + 2) out.push({tag: el.tagName, cls: el.className.toString().slice(0,60),
      over: el.scrollWidth - el.clientWidth, text: el.innerText.slice(0,80)});
  });
  const pre = document.createElement('pre'); pre.id = 'overflow-report';
  const images = [...document.querySelectorAll('main img')].map(i => ({src: i.getAttribute('src'),
    shown: Math.round(i.getBoundingClientRect().width), natural: i.naturalWidth}));
  pre.textContent = JSON.stringify({page: document.documentElement.scrollWidth - window.innerWidth, items: out,
    images: images});
  document.body.appendChild(pre);
}, 1500));
</script>"""

def check(page: Path, width: int) -> dict:
    """The page's sideways overflow (px) and each part wider than its box."""
    probe = page.with_name(".probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", SCRIPT + "</body>"))
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                  f"--window-size={width},900", "--virtual-time-budget=8000", "--dump-dom",
                                  f"file://{probe.resolve()}"], capture_output=True, text=True, timeout=120).stdout
    finally:
        probe.unlink()
    m = re.search(r'<pre id="overflow-report">(.*?)</pre>', dom, re.S)
    return json.loads(html.unescape(m.group(1))) if m else {"error": "no report"}

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--images", action="store_true", help="print each image's shown and natural width")
    args = parser.parse_args()
    wide = 0
    for page in args.pages:
        report = check(Path(page), args.width)
        items = report.get("items", [])
        wide += len(items) + (report.get("page", 0) > 0) + ("error" in report)
        print(f"{page}: {len(items)} wide part(s), page {'scrolls' if report.get('page', 0) > 0 else 'fits'}"
              + (f", {report['error']}" if "error" in report else ""))
        for item in items:
            print(f"  {item['tag']}.{item['cls'] or '-'} {item['over']} px too wide: {item['text'][:60]!r}")
        for image in report.get("images", []) if args.images else []:
            print(f"  image {Path(image['src']).name[:16]}: shown {image['shown']} px of {image['natural']} px")
    return 1 if wide else 0


if __name__ == "__main__":
    sys.exit(main())
