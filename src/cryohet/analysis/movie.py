"""A movie file of a volume series (``movie.gif``), rendered headless with numpy and Pillow.

Each frame shows the maps' iso-surface, at one level for the whole series (so that what
moves is what changes), from three directions side by side: along z (top), y (front) and
x (side) of the box, as ChimeraX would show them at the same level. The surface is ray
cast: for each pixel the first voxel along the view above the level gives the depth; the
surface normal comes from the depth gradient, shaded by a headlight from the upper left,
with depth cueing. The frames go forward and back (as ``movie.cxc`` plays the series),
with each map's caption. Volumes are ``(z, y, x)`` arrays, all of one box.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["shaded_view", "render_frames", "write_movie"]

#: Surface colour (RGB 0-1), the one movie.cxc uses (#6baed6), and the background.
SURFACE_RGB = np.array([0x6B, 0xAE, 0xD6]) / 255.0
BACKGROUND_RGB = np.array([1.0, 1.0, 1.0])
_LIGHT = np.array([-0.45, -0.45, 0.77])  # towards the viewer, from the upper left


def shaded_view(volume: np.ndarray, level: float, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightness in [0, 1] of the iso-surface seen along ``axis`` (0: z, 1: y, 2: x) and the
    mask of pixels that hit it; both ``(D, D)``."""
    from scipy.ndimage import gaussian_filter

    vol = np.moveaxis(np.asarray(volume, dtype=np.float64), axis, 0)
    inside = vol > level
    d = inside.shape[0]
    hit = inside.any(axis=0)
    first = inside.argmax(axis=0)
    # sub-voxel depth: where the density crosses the level between the voxel before and the hit
    after = np.take_along_axis(vol, first[None], axis=0)[0]
    before = np.take_along_axis(vol, np.maximum(first - 1, 0)[None], axis=0)[0]
    step = np.clip((after - level) / np.maximum(after - before, 1e-12), 0.0, 1.0) * (first > 0)
    depth = np.where(hit, first - step, d)
    filled = np.where(hit, depth, depth[hit].max() if hit.any() else d)  # no cliff at the outline
    gy, gx = np.gradient(gaussian_filter(filled, 0.7))
    normal = np.stack([-np.clip(gx, -4, 4), -np.clip(gy, -4, 4), np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=0, keepdims=True)
    lambert = np.clip(np.tensordot(_LIGHT / np.linalg.norm(_LIGHT), normal, axes=1), 0.0, 1.0)
    cue = 1.0 - 0.3 * depth / d
    return np.where(hit, np.clip((0.35 + 0.8 * lambert) * cue, 0.0, 1.0), 0.0), hit


def render_frames(volumes: Iterable[np.ndarray], level: float, captions: Sequence[str], size: int = 160) -> list:
    """One RGB Pillow image per map: three shaded views of ``size`` px and its caption."""
    from PIL import Image, ImageDraw

    frames = []
    for vol, caption in zip(volumes, captions):
        panels = []
        for axis in (0, 1, 2):
            shade, hit = shaded_view(vol, level, axis)
            lit = shade[..., None] * SURFACE_RGB + 0.25 * shade[..., None] ** 8  # a soft highlight
            rgb = np.where(hit[..., None], np.clip(lit, 0.0, 1.0), BACKGROUND_RGB)
            img = Image.fromarray((rgb * 255).astype(np.uint8)[::-1])  # y up, as ChimeraX shows it
            panels.append(img.resize((size, size), Image.BILINEAR))
        frame = Image.new("RGB", (3 * size, size + 18), (255, 255, 255))
        for k, panel in enumerate(panels):
            frame.paste(panel, (k * size, 18))
        ImageDraw.Draw(frame).text((4, 3), caption, fill=(30, 30, 30))
        frames.append(frame)
    return frames


def write_movie(
    path: str | Path, volumes: Iterable[np.ndarray], level: float, captions: Sequence[str], ms_per_frame: int = 350
) -> Path | None:
    """``path`` (.gif): the series forward then back, looping; None for an empty series.
    ``volumes`` may be a generator (one map in memory at a time)."""
    frames = render_frames(volumes, level, captions)
    if not frames:
        return None
    loop = frames + frames[-2:0:-1]  # forward and back, as movie.cxc oscillates
    out = Path(path)
    loop[0].save(out, save_all=True, append_images=loop[1:], duration=ms_per_frame, loop=0, optimize=True)
    return out
