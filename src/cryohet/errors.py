"""User-facing errors.

Every problem with what the user gave (a file, a flag, a run directory) raises a
:class:`CryohetError` subclass whose message is ONE line naming the file and the
problem. The CLI prints it as ``error: <message>`` and exits non-zero, without a
traceback. Anything else escaping to the CLI is a bug in cryohet and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class CryohetError(Exception):
    """Base class of errors caused by user input; the message is shown as is."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always a single line


class InputError(CryohetError):
    """A file or value the user gave is missing, malformed or inconsistent."""


class ConfigError(CryohetError):
    """An option or configuration value is invalid."""


class RunDirError(CryohetError):
    """A run directory is incomplete, corrupt or from an unknown method/version."""


def file_error(path: str | Path, problem: str) -> InputError:
    """``InputError`` formatted as ``<path>: <problem>``."""
    return InputError(f"{path}: {problem}")


class Interrupted(CryohetError):
    """The run was stopped by a signal (SIGINT: exit 130, SIGTERM: exit 143)."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code
