"""The CLI has no defaults of its own: each command builds exactly the config its class
builds from the required values; and every command's ``--help`` shows usage examples.

The API function a command calls is replaced by one that captures the config and stops;
the command runs with only its required arguments (``main([...])``, in process).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from cryohet.analysis.config import AnalyzeConfig, ExportConfig, SelectConfig
from cryohet.cli.app import app, main
from cryohet.cli.options import config_default, config_field, config_help, examples, param_default
from cryohet.io.source import ParticleSource
from cryohet.methods.baselines import Classify3DConfig, HomogeneousConfig, OracleConfig, PCAConfig
from cryohet.methods.drgnai.config import DrgnaiConfig
from cryohet.methods.spire.config import SpireConfig
from cryohet.simulate.config import SimulationConfig
from cryohet.workflows.backproject import BackprojectConfig
from cryohet.workflows.demo import DemoConfig


class Captured(Exception):
    """Raised by the stand-in API function: carries what the command passed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("captured")
        self.args_, self.kwargs = args, kwargs


def _capture(monkeypatch, target: str, argv: list[str]) -> Captured:
    """Run ``cryohet ARGV`` with ``target`` (``module:attribute``) replaced; what it was called with."""

    def stand_in(*args: Any, **kwargs: Any) -> None:
        raise Captured(*args, **kwargs)

    monkeypatch.setattr(target.replace(":", "."), stand_in)
    with pytest.raises(Captured) as info:
        main([str(a) for a in argv])
    return info.value


@pytest.fixture
def paths(tmp_path) -> dict[str, Path]:
    base = tmp_path.resolve()  # the train commands resolve their paths
    return {
        "particles": base / "particles.star",
        "out": base / "out",
        "labels": base / "labels.npy",
        "run": base / "run",
        "subset": base / "subset.star",
    }


# command line (required values only), the API function it calls, the expected config
CONFIG_COMMANDS = {
    "train spire": (
        lambda p: ["train", "spire", p["particles"], "--out", p["out"]],
        "cryohet.methods.spire:train_spire",
        lambda p: SpireConfig(data=ParticleSource(path=p["particles"]), out=str(p["out"])),
    ),
    "train drgnai": (
        lambda p: ["train", "drgnai", p["particles"], "--out", p["out"]],
        "cryohet.methods.drgnai:train_drgnai",
        lambda p: DrgnaiConfig(data=ParticleSource(path=p["particles"]), out=str(p["out"])),
    ),
    "train homogeneous": (
        lambda p: ["train", "homogeneous", p["particles"], "--out", p["out"]],
        "cryohet.methods.baselines:train_homogeneous",
        lambda p: HomogeneousConfig(data=ParticleSource(path=p["particles"]), out=str(p["out"])),
    ),
    "train oracle": (
        lambda p: ["train", "oracle", p["particles"], "--out", p["out"], "--labels", p["labels"]],
        "cryohet.methods.baselines:train_oracle",
        lambda p: OracleConfig(data=ParticleSource(path=p["particles"]), out=str(p["out"]), labels=p["labels"]),
    ),
    "train classify3d": (
        lambda p: ["train", "classify3d", p["particles"], "--out", p["out"]],
        "cryohet.methods.baselines:train_classify3d",
        lambda p: Classify3DConfig(data=ParticleSource(path=p["particles"]), out=str(p["out"])),
    ),
    "train pca": (
        lambda p: ["train", "pca", p["particles"], "--out", p["out"]],
        "cryohet.methods.baselines:train_pca",
        lambda p: PCAConfig(data=ParticleSource(path=p["particles"]), out=str(p["out"])),
    ),
    "simulate": (
        lambda p: ["simulate", "igg-1d", "--out", p["out"]],
        "cryohet.simulate.simulator:simulate_dataset",
        lambda p: SimulationConfig(preset="igg-1d", out=p["out"]),
    ),
    "backproject": (
        lambda p: ["backproject", p["particles"], "--out", p["out"] / "map.mrc"],
        "cryohet.workflows.backproject:backproject_to_files",
        lambda p: BackprojectConfig(data=ParticleSource(path=p["particles"]), out=p["out"] / "map.mrc"),
    ),
    "analyze": (
        lambda p: ["analyze", p["run"]],
        "cryohet.analysis.analyze:analyze_run",
        lambda p: AnalyzeConfig(run=p["run"]),
    ),
    "select": (
        lambda p: ["select", p["run"], "--out", p["subset"]],
        "cryohet.analysis.select:select_particles",
        lambda p: SelectConfig(run=p["run"], out=p["subset"]),
    ),
    "export": (
        lambda p: ["export", p["run"], "--out", p["subset"]],
        "cryohet.analysis.export:export_poses",
        lambda p: ExportConfig(run=p["run"], out=p["subset"]),
    ),
    "demo": (
        lambda p: ["demo"],  # no required values; --out has the CLI's own default folder
        "cryohet.workflows.demo:run_demo",
        lambda p: DemoConfig(out=Path("demo_run")),
    ),
    # the particle-reading commands build a ParticleSource (then load it)
    "info": (
        lambda p: ["info", p["particles"]],
        "cryohet.io.source:ParticleSource.load",
        lambda p: ParticleSource(path=p["particles"]),
    ),
    "convert": (
        lambda p: ["convert", p["particles"], "--star-out", p["subset"]],  # one output is required
        "cryohet.io.source:ParticleSource.load",
        lambda p: ParticleSource(path=p["particles"]),
    ),
    "downsample": (
        lambda p: ["downsample", p["particles"], "-D", "32", "--out", p["out"]],
        "cryohet.io.source:ParticleSource.load",
        lambda p: ParticleSource(path=p["particles"]),
    ),
}


@pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
def test_command_builds_the_config_class_defaults(command, paths, monkeypatch):
    argv, target, expected = CONFIG_COMMANDS[command]
    captured = _capture(monkeypatch, target, argv(paths)).args_[0]  # the config (for a method: self)
    want = expected(paths)
    assert type(captured) is type(want)
    assert captured.model_dump() == want.model_dump()


def test_an_option_given_reaches_the_config(paths, monkeypatch):
    """The capture is real: a value on the command line lands in the config."""
    argv = ["train", "spire", paths["particles"], "--out", paths["out"], "--epochs-a", "3", "--no-anchor-motion"]
    cfg = _capture(monkeypatch, "cryohet.methods.spire:train_spire", argv).args_[0]
    assert cfg.stage_a.epochs == 3 and cfg.stage_b.anchor_motion is False
    assert cfg.stage_b.epochs == SpireConfig.model_fields["stage_b"].default_factory().epochs

    cfg = _capture(monkeypatch, "cryohet.analysis.analyze:analyze_run", ["analyze", paths["run"], "--no-report"])
    assert cfg.args_[0].report is False and cfg.args_[0].volumes is True


def test_evaluate_and_volumes_pass_the_api_defaults(paths, monkeypatch, tmp_path):
    """Commands without a config pass their API function's own defaults."""
    from cryohet.analysis.volumes import write_volumes
    from cryohet.evaluation.evaluate import evaluate_run

    got = _capture(
        monkeypatch, "cryohet.evaluation.evaluate:evaluate_run", ["evaluate", paths["run"], "--gt", tmp_path]
    )
    defaults = inspect.signature(evaluate_run).parameters
    assert got.kwargs == {k: defaults[k].default for k in got.kwargs}
    assert set(got.kwargs) >= {"mask", "per_image", "align", "device"}

    z = tmp_path / "z.npy"
    np.save(z, np.zeros((2, 4), dtype=np.float32))
    got = _capture(
        monkeypatch,
        "cryohet.analysis.volumes:write_volumes",
        ["volumes", paths["run"], "--z", z, "--out", paths["out"]],
    )
    defaults = inspect.signature(write_volumes).parameters
    keys = ("box", "apix", "parts", "device", "overwrite", "allow_unfinished", "flip")
    assert {k: got.kwargs[k] for k in keys} == {k: defaults[k].default for k in keys}

    # without --z: no latents (the API's mean latent), and no latent file to protect
    got = _capture(monkeypatch, "cryohet.analysis.volumes:write_volumes", ["volumes", paths["run"], "-o", paths["out"]])
    assert got.args_[1] is None and got.kwargs["inputs"] == []
    got = _capture(
        monkeypatch, "cryohet.analysis.volumes:write_volumes", ["volumes", paths["run"], "-o", paths["out"], "--flip"]
    )
    assert got.kwargs["flip"] is True


# --------------------------------------------------------------------------- the helpers
def test_config_default_reads_nested_models():
    assert config_default(SpireConfig, "stage_a.epochs") == SpireConfig.model_fields["stage_a"].default_factory().epochs
    assert (
        config_default(SpireConfig, "optim.batch_size")
        == SpireConfig.model_fields["optim"].default_factory().batch_size
    )
    assert config_default(SpireConfig, "zdim") == SpireConfig.model_fields["zdim"].default
    assert config_default(SpireConfig, "parts") is None  # automatic stays None
    assert config_default(PCAConfig, "batch_size") == PCAConfig.model_fields["batch_size"].default


def test_config_default_honours_a_factory_that_sets_values():
    from pydantic import Field

    from cryohet.config import StrictModel
    from cryohet.methods.spire.config import StageAConfig

    class Custom(StrictModel):
        stage_a: StageAConfig = Field(default_factory=lambda: StageAConfig(epochs=3))
        optional: StageAConfig | None = None

    assert config_default(Custom, "stage_a.epochs") == 3
    assert config_default(Custom, "optional.epochs") == StageAConfig.model_fields["epochs"].default


def test_config_default_errors():
    with pytest.raises(ValueError, match="required"):
        config_default(SpireConfig, "out")
    with pytest.raises(KeyError, match="stage_a.nope"):
        config_field(SpireConfig, "stage_a.nope")
    with pytest.raises(KeyError, match="not a nested config"):
        config_default(SpireConfig, "zdim.x")


def test_config_help_and_param_default():
    assert config_help(Classify3DConfig, "classes") == "Number of classes K."
    assert config_help(SpireConfig, "zdim") is None
    assert param_default(lambda a, b=7: None, "b") == 7
    with pytest.raises(ValueError):
        param_default(lambda a: None, "a")
    assert examples("cryohet x") == "Example:\n\n  cryohet x"


# --------------------------------------------------------------------------- --help examples
def _commands(command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


ALL_COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_walked():
    names = {" ".join(p) for p, _ in ALL_COMMANDS}
    assert {"", "train", "train spire", "train pca", "simulate", "analyze", "demo"} <= names
    assert set(CONFIG_COMMANDS) <= names


@pytest.mark.parametrize("path,command", ALL_COMMANDS, ids=[" ".join(p) or "cryohet" for p, _ in ALL_COMMANDS])
def test_help_shows_a_usage_example(path, command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example" in out
    prefix = " ".join(("cryohet", *path))
    lines = [ln.strip() for ln in out.splitlines()]
    assert any(ln == prefix or ln.startswith(prefix + " ") for ln in lines), out
    # every example of the epilog renders whole, on a line of its own (copy-pasteable)
    for example in (ln.strip() for ln in (command.epilog or "").splitlines()):
        if example.startswith("cryohet"):
            assert len(example) <= 76, example
            assert example in lines, f"{example!r} not on its own line in:\n{out}"
