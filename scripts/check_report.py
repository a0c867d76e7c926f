#!/usr/bin/env python
"""Check a ``cryohet analyze`` report: self-contained HTML and a non-blank headless-Chromium render.

Usage::

    python scripts/check_report.py RUN/analyze/report.html [--screenshot shot.png] [--full-page]
        [--chromium /usr/bin/chromium] [--width 1400] [--height 3000]

--full-page renders a 20000 px tall window and crops the screenshot below the content, so
the PNG shows the whole report.

Exit status 0 when the HTML is self-contained (every <img> an embedded PNG, inline scripts only, no
external resources) and Chromium rendered a screenshot that is not blank; 1 otherwise
(each problem on its own line); 2 when no Chromium is installed (Debian: apt-get install
chromium) unless --no-browser is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from cryohet.analysis.htmlcheck import (
        blank_reason,
        check_html,
        find_chromium,
        screenshot,
        trim_bottom,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG to write (default: a temporary file)")
    ap.add_argument("--chromium", default=None, help="Chromium executable (default: found on PATH)")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--full-page", action="store_true", help="screenshot the whole page (tall window, cropped)")
    ap.add_argument("--no-browser", action="store_true", help="only check the HTML")
    args = ap.parse_args(argv)

    if not args.report.is_file():
        print(f"error: {args.report}: report not found", file=sys.stderr)
        return 1
    problems = check_html(args.report)
    for p in problems:
        print(f"html: {p}", file=sys.stderr)
    if args.no_browser:
        return 1 if problems else 0
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("error: no Chromium found (apt-get install chromium, or pass --chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        png = args.screenshot or Path(tmp) / "report.png"
        height = 20000 if args.full_page else args.height
        shot = screenshot(args.report, png, chromium, args.width, height)
        render = []
        if shot.returncode != 0:
            tail = " | ".join(shot.stderr.strip().splitlines()[-3:])
            render.append(f"chromium exited with status {shot.returncode}: {tail}")
        size = trim_bottom(png) if args.full_page and shot.ok else None  # before the blank check
        reason = blank_reason(png)
        if reason:
            render.append(reason)
        elif args.screenshot:
            print(f"screenshot: {png}" + (f" ({size[0]} x {size[1]} px)" if size else ""))
    for p in render:
        print(f"render: {p}", file=sys.stderr)
    problems += render
    if not problems:
        print(f"ok: {args.report} is self-contained and renders in {chromium}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
