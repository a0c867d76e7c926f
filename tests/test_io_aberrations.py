"""Optics refinements cryohet's CTF does not apply are listed by ``info`` and warned about
once when particles load; CTF-premultiplied images are refused (files RELION and cryoSPARC
wrote)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cryohet.cli.app import main
from cryohet.errors import InputError
from cryohet.io import particles as particles_module
from cryohet.io.particles import load_particles


def test_relion_refinements_are_listed(shared_fixtures, capsys):
    meta = load_particles(shared_fixtures / "relion31.6opticsgroups.star", stack_check="skip")
    unused = " | ".join(meta.extras["unused_optics"])
    assert "beam tilt up to 2.77 mrad in 6 of 6 optics group(s)" in unused
    assert "odd Zernike" in unused and "even Zernike" in unused and "anisotropic magnification" in unused
    plain = load_particles(shared_fixtures / "relion31.star", stack_check="skip")
    assert plain.extras["unused_optics"] == []
    assert main(["info", str(shared_fixtures / "relion31.6opticsgroups.star")]) == 0
    out = capsys.readouterr().out
    assert "not used" in out and "beam tilt" in out


def test_the_warning_comes_once_per_file(shared_fixtures, caplog, monkeypatch):
    monkeypatch.setattr(particles_module, "_warned_optics", set())
    with caplog.at_level(logging.WARNING, logger="cryohet"):
        for _ in range(3):
            load_particles(shared_fixtures / "relion5.star", stack_check="skip")
    warned = [r.getMessage() for r in caplog.records if "not used by cryohet's CTF" in r.getMessage()]
    assert len(warned) == 1 and "rlnBeamTiltX/Y" in warned[0]


def test_premultiplied_images_are_refused(shared_fixtures, tmp_path, capsys):
    text = (shared_fixtures / "relion31.star").read_text()
    assert "_rlnImageSize" in text
    star = tmp_path / "premultiplied.star"
    # one more optics column, its value appended to the (single) optics row
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("_rlnImageSize"))
    j = next(k for k in range(i, len(lines)) if lines[k].strip() and not lines[k].startswith("_"))
    lines.insert(j, "_rlnCtfDataAreCtfPremultiplied #10")
    lines[j + 1] = lines[j + 1] + " 1"
    star.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="premultiplied"):
        load_particles(star, stack_check="skip")
    assert main(["info", str(star)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "rlnCtfDataAreCtfPremultiplied" in err[0]


def test_cryosparc_global_ctf_refinement_is_listed(shared_fixtures, tmp_path):
    arr = np.load(shared_fixtures / "empiar_10076_7.cs")
    assert load_particles(shared_fixtures / "empiar_10076_7.cs").extras["unused_optics"] == []
    arr["ctf/tilt_A"][:3] = [0.2, -0.1]
    arr["ctf/anisomag"][:] = [0.01, 0.0, 0.0, -0.01]
    path = tmp_path / "refined.cs"
    with open(path, "wb") as fh:
        np.save(fh, arr)
    unused = load_particles(path, stack_check="skip").extras["unused_optics"]
    assert any("beam tilt up to 0.2 Å for 3 of 7" in u for u in unused), unused
    assert any("anisotropic magnification" in u for u in unused)
