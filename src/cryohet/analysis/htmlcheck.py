"""Checks of a report file: self-contained HTML, and a non-blank headless-Chromium screenshot.

:func:`check_html` parses the file with :mod:`html.parser` and lists problems: an image
that is not an embedded ``data:image/png;base64`` PNG (or does not decode as one), a
``<script src>``, an inline script that talks to a server (``fetch``, ``XMLHttpRequest``,
``WebSocket``, ``sendBeacon``, ``import()``), an external style sheet or other resource
fetched from somewhere, unbalanced section tags. Inline scripts are allowed (the report's
particle selection, :mod:`.report_select`). :func:`screenshot` renders the page with headless Chromium (no network,
no GPU, throw-away profile) and :func:`blank_reason` says why a screenshot looks blank.
``scripts/check_report.py`` runs both from the command line.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

__all__ = [
    "ReportHTML",
    "parse_report",
    "check_html",
    "find_chromium",
    "screenshot",
    "dump_dom",
    "blank_reason",
    "ScreenshotResult",
    "trim_bottom",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NETWORK_CALLS = ("fetch(", "XMLHttpRequest", "WebSocket", "sendBeacon", "import(", "EventSource")
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass
class ReportHTML:
    """What :func:`parse_report` saw: image sources, external references, tag balance."""

    images: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    scripts: int = 0
    script_text: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    open_tags: dict[str, int] = field(default_factory=dict)
    title: str = ""


class _Parser(HTMLParser):
    _BALANCED = ("section", "table", "div", "main", "details")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = ReportHTML()
        self._in_title = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.out.images.append(a.get("src") or "")
        if tag == "script":
            self.out.scripts += 1
            self._in_script = True
            self.out.script_text.append("")
            if a.get("src") is not None:
                self.out.external.append(f"<script src={str(a.get('src'))[:80]}>")
        if tag == "section" and a.get("id"):
            self.out.sections.append(str(a["id"]))
        if tag == "title":
            self._in_title = True
        for key in ("src", "href", "data"):
            v = (a.get(key) or "").strip()
            if v.startswith(("http:", "https:", "//", "ftp:")) or (tag == "link" and v):
                self.out.external.append(f"<{tag} {key}={v[:80]}>")
        if tag in self._BALANCED:
            self.out.open_tags[tag] = self.out.open_tags.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BALANCED:
            self.out.open_tags[tag] = self.out.open_tags.get(tag, 0) - 1
        if tag == "title":
            self._in_title = False
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.out.script_text[-1] += data
        if self._in_title:
            self.out.title += data


#: Chromium flags of every headless run: no GPU, network, sync, extensions or first-run UI.
_HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
)


def parse_report(path: str | Path) -> ReportHTML:
    """Parse ``path`` (UTF-8 HTML)."""
    p = _Parser()
    p.feed(Path(path).read_text(encoding="utf-8"))
    p.close()
    return p.out


def check_html(path: str | Path) -> list[str]:
    """Problems that make the report not self-contained or not well formed (empty = fine)."""
    text = Path(path).read_text(encoding="utf-8")
    problems = []
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("no <!DOCTYPE html> at the start")
    rep = parse_report(path)
    if not rep.images:
        problems.append("no images")
    prefix = "data:image/png;base64,"
    for i, src in enumerate(rep.images):
        if not src.startswith(prefix):
            problems.append(f"image {i}: not an embedded PNG ({src[:40]!r})")
            continue
        try:
            raw = base64.b64decode(src[len(prefix) :], validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"image {i}: invalid base64")
            continue
        if not raw.startswith(PNG_MAGIC):
            problems.append(f"image {i}: decoded data is not a PNG")
    for i, code in enumerate(rep.script_text):
        for call in _NETWORK_CALLS:
            if call in code:
                problems.append(f"script {i}: uses {call.strip('(')}; the report must work without a server")
    problems += [f"external resource {e}" for e in rep.external]
    problems += [f"unbalanced <{t}> ({n:+d})" for t, n in rep.open_tags.items() if n]
    return problems


def find_chromium(explicit: str | Path | None = None) -> str | None:
    """Path of a Chromium/Chrome executable (``explicit`` if given and present)."""
    if explicit:
        return str(explicit) if Path(explicit).exists() else shutil.which(str(explicit))
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class ScreenshotResult:
    """Exit status and stderr of Chromium, and the screenshot written (if any)."""

    returncode: int
    stderr: str
    png: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.png.exists() and self.png.stat().st_size > 0


def screenshot(
    html_path: str | Path,
    png: str | Path,
    chromium: str,
    width: int = 1400,
    height: int = 3000,
    timeout_s: float = 180.0,
) -> ScreenshotResult:
    """Render ``html_path`` with headless Chromium into ``png`` (viewport ``width`` x ``height``)."""
    page = Path(html_path).resolve().as_uri()
    out = Path(png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="cryohet-chromium-") as profile:
        cmd = [
            chromium,
            *_HEADLESS,
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            page,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return ScreenshotResult(124, f"chromium did not finish within {timeout_s:.0f} s", out)
    return ScreenshotResult(proc.returncode, proc.stderr, out)


def dump_dom(
    html_path: str | Path, chromium: str, fragment: str = "", budget_ms: int = 5000, timeout_s: float = 120.0
) -> str:
    """The DOM of ``html_path#fragment`` after its scripts ran (headless Chromium
    ``--dump-dom``, with ``budget_ms`` of virtual time for pending promises and timers)."""
    page = Path(html_path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory(prefix="cryohet-chromium-") as profile:
        cmd = [
            chromium,
            *_HEADLESS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={int(budget_ms)}",
            "--dump-dom",
            page,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"chromium exited with status {proc.returncode}: {tail}")
    return proc.stdout


def blank_reason(png: str | Path) -> str | None:
    """Why the screenshot ``png`` looks blank or broken, or None when it shows content."""
    from PIL import Image

    p = Path(png)
    if not p.exists() or p.stat().st_size == 0:
        return f"{p}: no screenshot written"
    try:
        with Image.open(p) as im:
            a = np.asarray(im.convert("L"), dtype=np.float32)
    except Exception as err:
        return f"{p}: not a readable image ({type(err).__name__})"
    if a.size == 0:
        return f"{p}: empty image"
    values, counts = np.unique(a.astype(np.uint8), return_counts=True)
    dominant = counts.max() / a.size
    if a.std() < 3.0 or dominant > 0.985:
        return f"{p}: looks blank (std {a.std():.1f}, {100 * dominant:.1f} % of pixels one shade)"
    return None


def trim_bottom(png: str | Path, margin: int = 24) -> tuple[int, int]:
    """Crop the empty page background below the content of a tall screenshot, in place
    (rows equal to the bottom row's colour count as background); returns the new size."""
    from PIL import Image

    p = Path(png)
    with Image.open(p) as im:
        rgb = im.convert("RGB")
    a = np.asarray(rgb, dtype=np.int16)
    background = a[-1, 0]
    differs = np.abs(a - background).max(axis=(1, 2)) > 3
    rows = np.flatnonzero(differs)
    bottom = min(a.shape[0], int(rows.max()) + 1 + margin) if rows.size else a.shape[0]
    if bottom < a.shape[0]:
        rgb.crop((0, 0, a.shape[1], bottom)).save(p)
    return a.shape[1], bottom
