"""cryoSPHERE (Ducrocq et al. 2025): an atomic model's residues as Gaussians, a learned
segmentation over residue index, and rigid per-image segment motions decoded from a latent.

In progress (issue 16): the segmentation (:mod:`.segmentation`), the blended rigid motion
(:mod:`.deformation`) and the physical restraints (:mod:`.restraints`) are here; the
residue model is shared (:mod:`cryohet.representations.residue_model`), as is the check
that the model sits in the consensus map (:mod:`cryohet.reconstruction.model_fit`).
"""
