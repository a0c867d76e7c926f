"""Wrappers that read other programs' outputs through the common method interface.

* :mod:`.cryodrgn_run` — a cryoDRGN ``train_vae`` output folder (method ``cryodrgn``).
"""

from .cryodrgn_run import CryoDRGNRunConfig, CryoDRGNRunModel, last_epoch, write_cryodrgn_wrapper

__all__ = ["CryoDRGNRunConfig", "CryoDRGNRunModel", "last_epoch", "write_cryodrgn_wrapper"]
