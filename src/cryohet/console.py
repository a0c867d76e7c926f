"""Logging and progress for long work (training, simulation, backprojection, analysis).

On a terminal: rich progress bars with rate and ETA. Not on a terminal (CI, ``nohup``,
pipes): plain log lines at most every few seconds. :func:`attach_run_log` mirrors every
log record to ``RUN/run.log`` so each run directory keeps its own history.

Python warnings (cryohet's own and third-party ones) reach the console as one log line
each, never as ``UserWarning`` with a source line: :func:`warnings_as_log` (the whole
command line, :func:`cryohet.cli.app.main`) and :func:`warnings_to_log` (one block, each
distinct message once).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = [
    "get_logger",
    "progress",
    "attach_run_log",
    "stderr_console",
    "is_tty",
    "set_progress_enabled",
    "warning_text",
    "show_warning",
    "warnings_as_log",
    "warnings_to_log",
]

T = TypeVar("T")

stderr_console = Console(stderr=True)
_LOGGER_NAME = "cryohet"
_progress_enabled = True


def set_progress_enabled(enabled: bool) -> None:
    """Show progress bars/lines (default) or not (ranks > 0 of a distributed run)."""
    global _progress_enabled
    _progress_enabled = bool(enabled)


def is_tty() -> bool:
    return sys.stderr.isatty()


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``cryohet`` logger (or a child), configured once for the console."""
    root = logging.getLogger(_LOGGER_NAME)
    if not root.handlers:
        if is_tty():
            handler: logging.Handler = RichHandler(console=stderr_console, show_path=False, rich_tracebacks=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return root if not name else root.getChild(name)


def warning_text(message: Warning | str, category: type[Warning] = UserWarning) -> str:
    """A warning as one line of text: whitespace collapsed; the category named unless it is
    a plain ``UserWarning`` (``DeprecationWarning: ...``)."""
    text = " ".join(str(message).split())
    return text if category is UserWarning or not issubclass(category, Warning) else f"{category.__name__}: {text}"


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the command line: one log line, no file, no source line."""
    get_logger().warning(warning_text(message, category))


@contextlib.contextmanager
def warnings_as_log() -> Iterator[None]:
    """Show every Python warning raised inside the block through :func:`show_warning`
    (the filters stay as they are: a warning shown once by default is shown once)."""
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        yield


@contextlib.contextmanager
def warnings_to_log() -> Iterator[None]:
    """Show the Python warnings raised inside the block as log lines when it ends, each
    distinct message once (a reader warning about every file of a set says it once)."""
    log = get_logger()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                text = warning_text(w.message, w.category)
                if text not in seen:
                    seen.add(text)
                    log.warning(text)


def attach_run_log(run_dir: str | Path) -> logging.Handler:
    """Append every cryohet log record to ``run_dir/run.log``; returns the handler."""
    path = Path(run_dir) / "run.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = get_logger()
    for h in logger.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve():
            return h
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    return handler


def detach_handler(handler: logging.Handler) -> None:
    get_logger().removeHandler(handler)
    handler.close()


class _RateColumn(ProgressColumn):
    """Items per second (blank until the rate is known)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:8.1f} {self.unit}/s")


def progress(
    items: Iterable[T], total: int | None = None, description: str = "", unit: str = "it", log_every_s: float = 10.0
) -> Iterator[T]:
    """Iterate with a progress display: a rich bar on a TTY, periodic log lines otherwise.

    Plain iteration when disabled by :func:`set_progress_enabled`.
    """
    if not _progress_enabled:
        yield from items
        return
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if is_tty():
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=stderr_console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    log = get_logger()
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= log_every_s:
            rate = done / max(now - start, 1e-9)
            eta = f", ETA {(total - done) / rate:.0f} s" if total else ""
            log.info(
                "%s: %d%s %s (%.1f %s/s%s)", description, done, f"/{total}" if total else "", unit, rate, unit, eta
            )
            last = now
