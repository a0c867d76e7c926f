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

from ..lazy import lazy_exports

#: Public name -> submodule. Imported on first use (PEP 562), so that light modules
#: (:mod:`.source`, :mod:`.outputs`, read by the command line as it starts) do not pull in
#: the readers (numpy, pandas, mrcfile, gemmi, torch through the geometry).
_LAZY = {
    "AtomicModel": ".atomic",
    "read_atomic_model": ".atomic",
    "read_ctf_pkl": ".cryodrgn",
    "read_ind_pkl": ".cryodrgn",
    "read_poses_pkl": ".cryodrgn",
    "write_ctf_pkl": ".cryodrgn",
    "write_ind_pkl": ".cryodrgn",
    "write_poses_pkl": ".cryodrgn",
    "read_cs": ".cryosparc",
    "write_cs_subset": ".cryosparc",
    "CTFParams": ".metadata",
    "ParticleMetadata": ".metadata",
    "ParticleSource": ".source",
    "check_stacks": ".particles",
    "load_particles": ".particles",
    "save_converted": ".particles",
    "ensure_not_input": ".paths",
    "read_star": ".star",
    "write_star": ".star",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
