"""cryohet: heterogeneous single-particle cryo-EM reconstruction.

Subpackages follow the data path (see docs/ARCHITECTURE.md):
``io`` (file formats) -> ``data`` (lazy particle batches) -> ``methods`` (models) ->
``imaging`` (the one forward model) -> ``training`` (loop, checkpoints) ->
``analysis`` / ``metrics`` (method-agnostic, on run directories).
"""

__version__ = "0.1.0"
