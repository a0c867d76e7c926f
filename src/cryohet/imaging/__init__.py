"""The physics shared by simulation and every method: CTF, transforms, projection, bands,
likelihoods, noise.

Representations answer central slices (:mod:`cryohet.representations.base`); the forward
model that composes them with CTF and shift lives in :mod:`cryohet.representations.render`.
"""
