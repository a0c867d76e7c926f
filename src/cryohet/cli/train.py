"""``cryohet train METHOD PARTICLES --out RUN``: one subcommand per method.

Each method's options live in its own module (``cli/train_<method>.py``) exposing
``register(train_app)``; this module only groups them.
"""

from __future__ import annotations

import importlib

import typer

from .options import examples

__all__ = ["register"]

train_app = typer.Typer(
    name="train",
    help="Train a reconstruction method into a run directory.",
    epilog=examples(
        "cryohet train spire particles.star --out runs/spire -D 128",
        "cryohet train homogeneous particles.star --out runs/consensus",
        "cryohet train spire --help",
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Modules that add subcommands to ``cryohet train``.
TRAIN_MODULES = ("train_spire", "train_drgnai", "train_sphere", "train_hetacumn", "train_baselines")


def register(app: typer.Typer) -> None:
    for name in TRAIN_MODULES:
        try:
            module = importlib.import_module(f"cryohet.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"cryohet.cli.{name}":
                continue
            raise
        module.register(train_app)
    app.add_typer(train_app, name="train")
