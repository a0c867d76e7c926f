"""The ``cryohet`` command line: thin wrappers that build config objects and call the API.

Each subcommand lives in its own module under :mod:`cryohet.cli` and exposes
``register(app)``. :func:`main` turns :class:`~cryohet.errors.CryohetError` into a single
``error: ...`` line and a non-zero exit; anything else is a cryohet bug and keeps its
traceback. Python warnings raised while a command runs are shown as one log line each.
"""

from __future__ import annotations

import errno
import importlib
import sys

import typer

from .. import __version__
from ..console import warnings_as_log
from ..errors import CryohetError
from .options import examples

app = typer.Typer(
    name="cryohet",
    help="Heterogeneous single-particle cryo-EM reconstruction.",
    epilog=examples(
        "cryohet simulate igg-1d --out data/igg1d",
        "cryohet train spire data/igg1d/particles.star --out runs/spire",
        "cryohet evaluate runs/spire --gt data/igg1d",
        "cryohet analyze runs/spire",
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"cryohet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Heterogeneous single-particle cryo-EM reconstruction."""


#: Subcommand modules, in the order they appear in ``cryohet --help``.
COMMAND_MODULES = (
    "info",
    "convert",
    "downsample",
    "simulate",
    "backproject",
    "train",
    "volumes",
    "models",
    "evaluate",
    "fsc",
    "analyze",
    "select",
    "export",
    "infer",
    "demo",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cryohet.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"cryohet.cli.{name}":
                continue  # command not built yet
            raise
        module.register(app)


_register_all()


#: System errors a user can act on, said in one line (no traceback).
_SYSTEM_ERRNOS = {
    errno.ENOSPC: "no space left on the device; free some space and run the command again (training: with --resume)",
    errno.EDQUOT: "disk quota exceeded; free some space and run the command again (training: with --resume)",
    errno.EROFS: "read-only file system; choose another --out",
    errno.EACCES: "permission denied; choose a folder you can write to (--out)",
    errno.EPERM: "operation not permitted; choose a folder you can write to (--out)",
}
_OUT_OF_MEMORY = (
    "out of memory; use a smaller -b/--batch-size, a smaller box (-D/--box) or fewer Gaussians, "
    "or a machine with more memory (a training run continues with --resume)"
)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        with warnings_as_log():
            app(args=argv, prog_name="cryohet")  # standalone: usage errors exit 2 with a message
    except CryohetError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in _SYSTEM_ERRNOS:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{_SYSTEM_ERRNOS[err.errno]}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"error: {_OUT_OF_MEMORY}", file=sys.stderr)
        return 1
    except RuntimeError as err:  # torch reports allocation failures as RuntimeError / OutOfMemoryError
        text = str(err)
        if "out of memory" not in text.lower() and "DefaultCPUAllocator" not in text:
            raise
        print(f"error: {_OUT_OF_MEMORY}", file=sys.stderr)
        return 1
    except SystemExit as err:
        code = err.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
