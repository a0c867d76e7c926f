"""The simulation presets by name: what the command line and :class:`~.config.SimulationConfig`
need to know about them (model file, physical box, default number of states, a summary).

Pure data, so ``cryohet simulate --help`` lists the presets without importing the
ensembles (numpy, scipy, gemmi); :mod:`.presets` builds them. igg-1d defaults to the 20
states of the README's examples (CryoBench's IgG-1D has 100: ``--n-states 100``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "PresetInfo"]


@dataclass(frozen=True)
class PresetInfo:
    name: str
    model: str | None  # bundled model file name
    box_A: float | None  # default physical box size
    default_states: int
    summary: str


PRESETS: dict[str, PresetInfo] = {
    "igg-1d": PresetInfo("igg-1d", "1hzh.pdb.gz", 384.0, 20, "IgG Fab rotating about the hinge through 360°"),
    "igg-rl": PresetInfo("igg-rl", "1hzh.pdb.gz", 384.0, 100, "IgG Fab in random hinge configurations"),
    "assembly": PresetInfo("assembly", "1occ.pdb.gz", 288.0, 10, "cytochrome c oxidase assembly intermediates"),
    "custom": PresetInfo("custom", None, None, 1, "your own model (single state or hinge motion)"),
}
