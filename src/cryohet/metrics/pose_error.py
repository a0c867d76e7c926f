"""Pose errors after global alignment (DRGN-AI ``metrics.py`` / CryoBench ``pose_error``).

**Conventions.** Rotations are RELION matrices ``A`` (column vectors, ``x_img = A x_vol``);
cryoDRGN's ``R`` equals ``A``, so DRGN-AI's formulas apply unchanged. Translations are
2D image shifts in **pixels** ``(x, y)`` (divide Å by the pixel size first; any consistent
sign convention works, e.g. RELION's origin).

**Global alignment.** A reconstruction is only determined up to a global rotation of
its frame and, ab initio, its hand. If the predicted volume is the true one rotated by
``G`` (``x_pred = G x_gt``), the predicted poses are ``R_pred = R_gt G^T``: the
alignment multiplies on the **right**, ``R_pred Q ≈ R_gt``. A mirrored reconstruction
(``F = diag(1, 1, -1)``) explains the same images with ``F R_gt F`` (projection along z
does not see the z flip), so the flipped hypothesis compares ``F R_pred F Q`` with
``R_gt`` (the same as DRGN-AI's ``F R_pred (R_pred,i^T F R_gt,i)``).

Each of ``n_anchors`` images ``i`` proposes ``Q = R_pred,i^T R_gt,i`` (or with ``F``); the
proposal with the smallest median squared Frobenius distance ``|R_pred Q - R_gt|_F^2``
wins, over both hands. CryoBench's ``rot_error.py`` (``F R_pred (R_gt,i^T F R_pred,i)^T``)
and DRGN-AI's formulas are algebraically the same. Anchors here are evenly spread over
the images (deterministic) instead of the first ``n`` (DRGN-AI, 100) or a random draw
(CryoBench, 30; per ground-truth class, :func:`rotation_errors_per_class`).

**Errors** (degrees; mean and median reported):

* rotation: geodesic angle ``arccos((tr(A^T B) - 1) / 2)``;
* out-of-plane: angle between the viewing directions, the third rows ``A[2]``;
* in-plane: difference of the in-plane Euler angle, wrapped to ``[0, 180]``. DRGN-AI
  takes the first angle of scipy's extrinsic ``"zxz"`` decomposition of ``R^T``, which
  is the leftmost (last-applied, about the image normal) factor of ``R``; in RELION's
  ZYZ this is ``psi`` and the two differ by a constant, so differences agree;
* translation (pixels): RMSE, root median squared error, mean and median absolute
  error of ``|t_gt - t_pred_corrected|``, optionally after a least-squares global 3D
  offset ``u`` (the predicted volume's centre is arbitrary):
  ``t_pred - t_gt ≈ [R u]_xy``, with ``R`` the predicted rotations (as DRGN-AI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.rotations import matrix_to_euler_relion, rotation_angle_deg

__all__ = [
    "GlobalAlignment",
    "RotationErrors",
    "TranslationErrors",
    "align_rotations",
    "rotation_errors",
    "rotation_errors_per_class",
    "symmetry_mate_errors",
    "class_average",
    "per_state_median",
    "per_state_rotation_errors",
    "translation_errors",
]

_F = np.diag([1.0, 1.0, -1.0])
#: squared Frobenius distance of two rotations 20° apart, ``8 sin^2(10°)``
_FROB_20_DEG = 8.0 * np.sin(np.radians(10.0)) ** 2


@dataclass(frozen=True)
class GlobalAlignment:
    """``aligned = (F R_pred F if flipped else R_pred) @ Q``; ``median_frob`` is the winning
    median ``|aligned - R_gt|_F^2`` and ``anchor`` the image that proposed ``Q``."""

    Q: np.ndarray
    flipped: bool
    median_frob: float
    anchor: int
    aligned: np.ndarray

    def apply(self, rot_pred: np.ndarray) -> np.ndarray:
        """Apply this alignment to other predicted rotations (N, 3, 3)."""
        R = np.asarray(rot_pred, dtype=np.float64)
        if self.flipped:
            R = _F @ R @ _F
        return R @ self.Q


@dataclass(frozen=True)
class RotationErrors:
    """Per-image errors in degrees and their summaries; ``alignment`` is what was applied."""

    rotation_deg: np.ndarray
    out_of_plane_deg: np.ndarray
    in_plane_deg: np.ndarray
    alignment: GlobalAlignment | None

    def summary(self) -> dict[str, float]:
        """Mean and median of each error, plus the hand (1.0 if flipped)."""
        out: dict[str, float] = {}
        for name in ("rotation_deg", "out_of_plane_deg", "in_plane_deg"):
            v = getattr(self, name)
            out[f"{name}_mean"] = float(np.mean(v))
            out[f"{name}_median"] = float(np.median(v))
        if self.alignment is not None:
            out["flipped"] = float(self.alignment.flipped)
        return out


@dataclass(frozen=True)
class TranslationErrors:
    """Translation errors in pixels; ``offset_px`` is the fitted global 3D offset ``u``."""

    error_px: np.ndarray
    rmse: float
    rmedse: float
    mae: float
    medae: float
    offset_px: np.ndarray
    corrected_px: np.ndarray

    def summary(self) -> dict[str, float]:
        return {"rmse_px": self.rmse, "rmedse_px": self.rmedse, "mae_px": self.mae, "medae_px": self.medae}


def _rots(x: np.ndarray, name: str) -> np.ndarray:
    R = np.asarray(x, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise ValueError(f"{name} must have shape (N, 3, 3), got {R.shape}")
    return R


def _anchor_indices(n: int, n_anchors: int) -> np.ndarray:
    k = min(n, int(n_anchors))
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def align_rotations(
    rot_pred: np.ndarray,
    rot_gt: np.ndarray,
    n_anchors: int = 100,
    flip: bool = True,
    operators: np.ndarray | None = None,
) -> GlobalAlignment:
    """Global alignment ``R_pred Q ≈ R_gt`` by anchor images (see the module docstring).

    Anchors are ``n_anchors`` images evenly spread over the set; ``flip`` also tries the
    mirrored hand. Returns the winning :class:`GlobalAlignment`.

    With ``operators (K, 3, 3)``, the particle's (pseudo-)symmetry rotations ``S`` in the
    volume frame (:func:`symmetry_mate_errors`), a pose at a mate ``R_gt S^T`` counts as
    right: each anchor also proposes ``Q = R_pred,i^T R_gt,i S^T`` for every ``S``, and the
    score is the median over images of the distance to the nearest mate, and the frame is
    the one that puts most images at the truth rather than at a mate (the operators should
    form a group with the identity, as a two-fold does). Without them, an
    ab initio run whose poses split about evenly between two mates (a dimer) gets the
    alignment that fits neither group: the median of the plain error sits between them.
    """
    P = _rots(rot_pred, "rot_pred")
    G = _rots(rot_gt, "rot_gt")
    if len(P) != len(G) or len(P) == 0:
        raise ValueError(f"need the same, non-zero number of poses, got {len(P)} and {len(G)}")
    anchors = _anchor_indices(len(P), n_anchors)
    mates = _mates(operators)
    targets = G[:, None] @ np.swapaxes(mates, -1, -2)[None]  # (N, M, 3, 3): R_gt S^T
    best: GlobalAlignment | None = None
    for flipped in [False, True] if flip else [False]:
        Pf = _F @ P @ _F if flipped else P
        Qs = np.swapaxes(Pf[anchors], -1, -2)[:, None] @ targets[anchors]  # (K, M, 3, 3)
        for a, Q in zip(np.repeat(anchors, len(mates)), Qs.reshape(-1, 3, 3)):
            aligned = Pf @ Q
            frob = np.sum((aligned[:, None] - targets) ** 2, axis=(-1, -2)).min(axis=1)
            med = float(np.median(frob))
            if best is None or med < best.median_frob:
                best = GlobalAlignment(Q=Q, flipped=flipped, median_frob=med, anchor=int(a), aligned=aligned)
    assert best is not None
    if len(mates) > 1:  # name the frame after the largest group: most poses at the truth, not at a mate
        frob = np.sum((best.aligned[:, None] - targets) ** 2, axis=(-1, -2))
        close = frob.min(axis=1) < _FROB_20_DEG  # wrong poses would vote at random
        k = int(np.bincount(frob[close].argmin(axis=1), minlength=len(mates)).argmax())
        if k:  # P Q ≈ G S_k^T for most images, so P (Q S_k) ≈ G for them
            Q = best.Q @ mates[k]
            Pf = _F @ P @ _F if best.flipped else P
            best = GlobalAlignment(Q=Q, flipped=best.flipped, median_frob=best.median_frob, anchor=best.anchor,
                                   aligned=Pf @ Q)  # fmt: skip
    return best


def _mates(operators: np.ndarray | None) -> np.ndarray:
    """``(M, 3, 3)``: the identity, then the symmetry ``operators`` (if any)."""
    if operators is None:
        return np.eye(3)[None]
    ops = np.asarray(operators, dtype=np.float64).reshape(-1, 3, 3)
    return np.concatenate([np.eye(3)[None], ops], axis=0)


def _wrap_deg(d: np.ndarray) -> np.ndarray:
    """|d| wrapped to [0, 180] degrees."""
    return np.abs((np.asarray(d) + 180.0) % 360.0 - 180.0)


def rotation_errors(
    rot_pred: np.ndarray, rot_gt: np.ndarray, align: bool = True, n_anchors: int = 100, flip: bool = True
) -> RotationErrors:
    """Rotation, out-of-plane and in-plane errors (degrees) after optional global alignment."""
    P = _rots(rot_pred, "rot_pred")
    G = _rots(rot_gt, "rot_gt")
    alignment = align_rotations(P, G, n_anchors, flip) if align else None
    A = alignment.aligned if alignment is not None else P
    if len(A) != len(G):
        raise ValueError(f"need the same number of poses, got {len(A)} and {len(G)}")
    rot = rotation_angle_deg(A, G)
    va, vg = A[:, 2], G[:, 2]
    cosang = np.sum(va * vg, axis=-1) / (np.linalg.norm(va, axis=-1) * np.linalg.norm(vg, axis=-1))
    oop = np.rad2deg(np.arccos(np.clip(cosang, -1.0, 1.0)))
    ip = _wrap_deg(matrix_to_euler_relion(A)[:, 2] - matrix_to_euler_relion(G)[:, 2])
    return RotationErrors(rotation_deg=rot, out_of_plane_deg=oop, in_plane_deg=ip, alignment=alignment)


def rotation_errors_per_class(
    rot_pred: np.ndarray, rot_gt: np.ndarray, labels: np.ndarray, n_anchors: int = 30, flip: bool = True
) -> dict[int, RotationErrors]:
    """CryoBench's per-class variant: align and score each ground-truth class separately.

    Returns ``{label: RotationErrors}``; CryoBench reports the average over classes of
    the per-class mean and median geodesic errors (see :func:`class_average`).
    """
    lab = np.asarray(labels)
    P = _rots(rot_pred, "rot_pred")
    G = _rots(rot_gt, "rot_gt")
    if len(lab) != len(P):
        raise ValueError(f"labels ({len(lab)}) and poses ({len(P)}) differ in number")
    return {
        int(c): rotation_errors(P[lab == c], G[lab == c], align=True, n_anchors=n_anchors, flip=flip)
        for c in np.unique(lab)
    }


def class_average(per_class: dict[int, RotationErrors]) -> dict[str, float]:
    """Unweighted average over classes of each per-class summary value."""
    keys = next(iter(per_class.values())).summary().keys()
    return {k: float(np.mean([e.summary()[k] for e in per_class.values()])) for k in keys}


def per_state_median(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{state: median of values over its images}`` (keys as strings, JSON-ready)."""
    return {str(int(s)): float(np.median(values[labels == s])) for s in np.unique(labels)}


def per_state_rotation_errors(rot: np.ndarray, rot_gt: np.ndarray, errors_deg: np.ndarray, labels: np.ndarray) -> dict:
    """Per state: the median rotation error (degrees) under one global alignment
    (``errors_deg``, per image, from :func:`rotation_errors`), and CryoBench's per-class
    errors (each state aligned on its own, :func:`rotation_errors_per_class`, and their class
    average). A state whose median falls far when aligned alone has a frame offset of its
    own: its poses took up part of the conformational change. Empty for fewer than two states."""
    states = np.unique(labels)
    if len(states) < 2:
        return {}
    per_class = rotation_errors_per_class(rot, rot_gt, labels)
    return {
        "per_state_rotation_deg_median": per_state_median(errors_deg, labels),
        "per_state_aligned_rotation_deg_median": {
            str(int(s)): float(np.median(per_class[int(s)].rotation_deg)) for s in states
        },
        "per_class_aligned": {k: float(v) for k, v in class_average(per_class).items() if k != "flipped"},
    }


def translation_errors(
    trans_pred_px: np.ndarray,
    trans_gt_px: np.ndarray,
    rot_pred: np.ndarray | None = None,
    correct_global_offset: bool = True,
) -> TranslationErrors:
    """Translation errors in pixels, after removing one global 3D offset ``u``.

    With ``correct_global_offset`` (needs ``rot_pred``, the predicted rotations used by
    the method), ``u`` is the least-squares solution of ``t_pred - t_gt = [R u]_xy`` and
    ``t_pred - [R u]_xy`` is compared with ``t_gt``.
    """
    tp = np.asarray(trans_pred_px, dtype=np.float64)
    tg = np.asarray(trans_gt_px, dtype=np.float64)
    if tp.shape != tg.shape or tp.ndim != 2 or tp.shape[1] != 2:
        raise ValueError(f"translations must both have shape (N, 2), got {tp.shape} and {tg.shape}")
    u = np.zeros(3)
    corrected = tp
    if correct_global_offset:
        if rot_pred is None:
            raise ValueError("correct_global_offset needs rot_pred")
        R = _rots(rot_pred, "rot_pred")
        M = R[:, :2, :].reshape(-1, 3)  # rows: (R u)_x, (R u)_y per image
        u = np.linalg.lstsq(M, (tp - tg).reshape(-1), rcond=None)[0]
        corrected = tp - (R[:, :2, :] @ u)
    d2 = np.sum((tg - corrected) ** 2, axis=1)
    err = np.sqrt(d2)
    return TranslationErrors(
        error_px=err,
        rmse=float(np.sqrt(np.mean(d2))),
        rmedse=float(np.sqrt(np.median(d2))),
        mae=float(np.mean(err)),
        medae=float(np.median(err)),
        offset_px=u,
        corrected_px=corrected,
    )


def symmetry_mate_errors(
    aligned: np.ndarray, rot_gt: np.ndarray, operators: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation errors (degrees) modulo a (pseudo-)symmetry of the particle.

    If the particle's density satisfies ``V(S x + t) ≈ V(x)`` for a volume-frame rotation
    ``S`` (RELION ``A`` acts on volume coordinates, ``x_img = A x_vol``), the image at pose
    ``A`` is the image at ``A S^T`` up to a shift, so both are right answers. Returns each
    image's smallest error to ``rot_gt`` or to any ``rot_gt @ S^T`` for ``S`` in
    ``operators (K, 3, 3)``, and the index of the mate it is nearest (0: the pose itself,
    ``k``: operator ``k - 1``). ``aligned`` are predicted rotations after the global alignment.
    """
    A = _rots(aligned, "aligned")
    G = _rots(rot_gt, "rot_gt")
    mates = _mates(operators)  # (K + 1, 3, 3)
    errs = np.stack([rotation_angle_deg(A, G @ S.T) for S in mates], axis=1)  # (N, K + 1)
    nearest = np.argmin(errs, axis=1)
    return errs[np.arange(len(A)), nearest], nearest
