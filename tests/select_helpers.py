"""Helpers of the browser tests of the report's particle selection: load a page with a
scripted lasso in its URL fragment and read back what it would download."""

from __future__ import annotations

import base64
import html
import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np

from cryohet.analysis.htmlcheck import dump_dom
from cryohet.io.safe_pickle import load_pickle

CHROMIUM = Path("/usr/bin/chromium")


def result(path: Path, fragment: str) -> dict:
    assert CHROMIUM.exists(), "needs /usr/bin/chromium: run `make browser` as root (apt-get)"
    dom = dump_dom(path, str(CHROMIUM), fragment)
    m = re.search(r'<pre id="sel-result"[^>]*>(.*?)</pre>', dom, re.S)
    assert m and m.group(1), "the page wrote no result"
    out = json.loads(html.unescape(m.group(1)))
    assert "error" not in out, out
    return out


def inside(poly: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Even-odd rule, the same arithmetic as the page (float64 on float32 coordinates)."""
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    c = np.zeros(len(xy), dtype=bool)
    for i in range(len(poly)):
        (xi, yi), (xj, yj) = poly[i], poly[i - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
        c ^= cross
    return c


def lasso(poly: np.ndarray, mode: str = "") -> str:
    return "lasso=" + mode + ",".join(repr(float(v)) for v in poly.reshape(-1))


def check_pickle(b64: str, expected: np.ndarray, tmp: Path) -> None:
    raw = base64.b64decode(b64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy 2 loads numpy.core.multiarray._reconstruct without a warning
        arr = pickle.loads(raw)
    assert arr.dtype == np.int64 and arr.ndim == 1
    np.testing.assert_array_equal(arr, expected)
    (tmp / "ind.pkl").write_bytes(raw)
    safe = load_pickle(tmp / "ind.pkl")
    assert safe.dtype == np.int64
    np.testing.assert_array_equal(safe, expected)
    python = pickle.dumps(np.asarray(expected, dtype=np.int64), protocol=2)
    assert raw == python.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
