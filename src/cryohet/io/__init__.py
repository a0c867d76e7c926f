"""File formats, converted to cryohet's one internal convention at the border.

* :mod:`.mrc` MRC/MRCS stacks and volumes; :mod:`.star` RELION STAR 3.0-5;
  :mod:`.cryosparc` cryoSPARC ``.cs``; :mod:`.cryodrgn` cryoDRGN pickles;
  :mod:`.atomic` PDB/mmCIF models; :mod:`.particles` the dispatcher
  :func:`load_particles`; :mod:`.paths` path resolution; :mod:`.outputs` the rules
  every writer follows (inputs never replaced, atomic files, folders swapped whole).
* Every reader returns :class:`ParticleMetadata` (rotations = RELION ``A``, shifts =
  RELION origin in Å, CTF in RELION units) or another plain typed object.
"""

from __future__ import annotations

from .atomic import AtomicModel, read_atomic_model
from .cryodrgn import (
    read_ctf_pkl,
    read_ind_pkl,
    read_poses_pkl,
    write_ctf_pkl,
    write_ind_pkl,
    write_poses_pkl,
)
from .cryosparc import read_cs, write_cs_subset
from .metadata import CTFParams, ParticleMetadata
from .particles import ParticleSource, check_stacks, load_particles, save_converted
from .paths import ensure_not_input
from .star import read_star, write_star

__all__ = [
    "AtomicModel",
    "CTFParams",
    "ParticleMetadata",
    "ParticleSource",
    "check_stacks",
    "ensure_not_input",
    "load_particles",
    "read_atomic_model",
    "read_cs",
    "read_ctf_pkl",
    "read_ind_pkl",
    "read_poses_pkl",
    "read_star",
    "save_converted",
    "write_cs_subset",
    "write_ctf_pkl",
    "write_ind_pkl",
    "write_poses_pkl",
    "write_star",
]
