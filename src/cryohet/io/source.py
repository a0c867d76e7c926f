"""Where a particle set comes from: :class:`ParticleSource`, the config every command that
reads particles takes.

Pure pydantic (no numpy, no file readers), so the command line can read its fields and
defaults without importing the readers; :meth:`ParticleSource.load` imports
:func:`cryohet.io.particles.load_particles` when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from ..config import StrictModel, validation_message
from ..errors import ConfigError

if TYPE_CHECKING:
    from .metadata import ParticleMetadata
    from .particles import StackCheck

__all__ = ["ParticleSource"]


class ParticleSource(StrictModel):
    """Where a particle set comes from (the fields every command that reads particles takes)."""

    path: Path
    datadir: Path | None = None
    poses: Path | None = None
    ctf: Path | None = None
    ind: Path | None = None
    passthrough: Path | None = None
    apix: float | None = Field(default=None, gt=0)

    @classmethod
    def build(cls, **fields) -> ParticleSource:
        """Validate fields (e.g. from the CLI); a bad value is a one-line ConfigError."""
        try:
            return cls(**fields)
        except ValidationError as err:
            raise ConfigError(validation_message(err)) from None

    def files(self) -> list[Path]:
        """The files named here (particle file and pickles; not the stacks): what an output must not replace."""
        return [p for p in (self.path, self.poses, self.ctf, self.ind, self.passthrough) if p is not None]

    def load(self, stack_check: StackCheck = "error") -> ParticleMetadata:
        """:func:`~cryohet.io.particles.load_particles` with these fields."""
        from .particles import load_particles

        return load_particles(
            self.path,
            poses=self.poses,
            ctf=self.ctf,
            datadir=self.datadir,
            ind=self.ind,
            passthrough=self.passthrough,
            apix=self.apix,
            stack_check=stack_check,
        )
