"""The physics shared by simulation and every method: CTF, transforms, projection, noise.

``render(representation, rotations, shifts_A, ctf_params, box, apix)`` is the single
forward model (:mod:`cryohet.imaging.render`).
"""
