"""cryoSPHERE's network and objective on a tiny simulated hinge: a Fab (1HZH chains H 1-230
and L) whose light chain turns by 40° about an axis through the heavy chain, two states,
images at D=32 (5 Å/px) with their true poses, chain L named as the movable one (two
segments). Trained through the shared render seam with the paper's annealed KL weights,
the latents separate the two states, the residues decoded at each state's mean latent
land near that state's true positions, and the light chain moves as one rigid body.

Measured while writing it: with the whole Fab movable and 4 segments over the global
residue index, the segment straddling the H/L chain boundary dragged the heavy chain
along (every segment turned ~40° in state 1, heavy-chain errors 6-8 Å): segments that
cross a chain boundary are a problem the trainer must solve (issue 16), not this test."""

from __future__ import annotations

import json

import gemmi
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from cryohet.data.dataset import ParticleDataset
from cryohet.geometry.rigid import kabsch
from cryohet.imaging.bands import FourierBand
from cryohet.imaging.likelihood import WeightedL2
from cryohet.io.atomic import read_atomic_model
from cryohet.io.particles import ParticleSource
from cryohet.methods.sphere.network import SphereNetwork
from cryohet.methods.sphere.objective import ObjectiveWeights, batch_objective, cyclic_beta, linear_beta
from cryohet.methods.sphere.restraints import clash_pairs
from cryohet.representations.render import prepare_batch
from cryohet.representations.residue_model import residue_model
from cryohet.simulate.config import SimulationConfig
from cryohet.simulate.presets import bundled_model_path
from cryohet.simulate.simulator import simulate_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hinge(tmp_path_factory):
    root = tmp_path_factory.mktemp("hinge")
    st = gemmi.read_structure(str(bundled_model_path("1hzh.pdb.gz")))
    st.remove_hydrogens()
    st.remove_waters()
    model = st[0]
    for chain in model:  # glycans and other hetero residues out: a plain Fab
        for i in reversed(range(len(chain))):
            if chain[i].het_flag == "H":
                del chain[i]
    for name in ("K", "M"):
        model.remove_chain(name)
    heavy = model["H"]
    for i in reversed(range(len(heavy))):
        if heavy[i].seqid.num > 230:
            del heavy[i]
    fab = root / "fab.pdb"
    st.write_pdb(str(fab))
    data = root / "data"
    simulate_dataset(SimulationConfig(
        preset="custom", model=fab, moving="L", axis="H:150,H:190", angle_min_deg=0.0, angle_max_deg=40.0,
        n_states=2, out=data, n_images=600, box=32, apix=5.0, snr=1.0, seed=5,
    ))  # fmt: skip
    return fab, data


def _train(fab, data, epochs=24, seed=0):
    torch.manual_seed(seed)
    meta_json = json.loads((data / "meta.json").read_text())
    box, apix = meta_json["box"], meta_json["apix"]
    atoms = read_atomic_model(fab, remove_hydrogens=True, remove_waters=True)
    # the model in the consensus map's frame: the simulator put centre_A on the box centre
    atoms.coords_A = atoms.coords_A - np.asarray(meta_json["centre_A"]) + (box // 2) * apix
    residues = residue_model(atoms, chains=["L"])  # the user names the chain that may move
    meta = ParticleSource(path=data / "particles.star").load()
    ds = ParticleDataset(meta, normalize=True)
    band = FourierBand.disc(box, apix)
    lik = WeightedL2.white_noise(band)
    net = SphereNetwork(residues, box, apix, zdim=2, segments=2)
    opt = torch.optim.Adam(
        [
            {"params": [p for n, p in net.named_parameters() if not n.startswith("segmentation")], "lr": 3e-3},
            {"params": net.segmentation.parameters(), "lr": 1e-2},
        ]
    )
    bonded = torch.as_tensor(residues.bonded_to_next)
    pairs = clash_pairs(net.base_A)
    rng = np.random.default_rng(seed)
    n = len(ds)
    for epoch in range(epochs):
        net.train()
        b = linear_beta(epoch / epochs)
        weights = ObjectiveWeights(beta_z=b, beta_segmentation=b, beta_proportions=cyclic_beta(epoch / epochs))
        for rows in np.array_split(rng.permutation(n), n // 32):
            batch = ds.get_batch(rows)
            bb = prepare_batch(batch, band, "cpu")
            terms = batch_objective(net, bb, batch.images, lik, weights, n, bonded, pairs)
            opt.zero_grad()
            terms.loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        z = torch.cat([net.encoder(ds.get_batch(np.arange(a, min(n, a + 100))).images)[0] for a in range(0, n, 100)])
    return net, residues, atoms, z.numpy()


def test_the_hinge_is_found_and_decoded_where_the_states_are(hinge):
    fab, data = hinge
    net, residues, atoms, z = _train(fab, data)
    labels = np.load(data / "gt" / "labels.npy")
    pred = KMeans(2, n_init=5, random_state=0).fit_predict(z)
    ari = adjusted_rand_score(labels, pred)
    # decoded at each state's mean latent, the residues land on the state's true CAs
    gt = np.load(data / "gt" / "atoms.npz")
    ca = atoms.atom_names == "CA"
    rmsd = []
    with torch.no_grad():
        for s in range(2):
            zs = torch.as_tensor(z[labels == s].mean(axis=0, keepdims=True))
            moved = net.deformed(zs, net.memberships(1, sample=False))[0].numpy()
            true = gt["coords_A"][s][ca]
            rmsd.append(float(np.sqrt(((moved - true) ** 2).sum(-1).mean())))
    start = float(np.sqrt(((net.base_A.numpy() - gt["coords_A"][1][ca]) ** 2).sum(-1).mean()))
    # the light chain moved as one rigid body (its two segments agree): one rigid fit of
    # its residues from the input model to the decoded state-1 positions leaves little
    light = torch.as_tensor(residues.movable)
    with torch.no_grad():
        z1 = torch.as_tensor(z[labels == 1].mean(axis=0, keepdims=True))
        moved1 = net.deformed(z1, net.memberships(1, sample=False))[0]
    src, dst = net.base_A[light].double(), moved1[light].double()
    R, t = kabsch(src[None], dst[None], torch.ones(1, len(src), dtype=torch.float64))
    rigid_rms = float(((src @ R[0].T + t[0] - dst) ** 2).sum(-1).mean().sqrt())
    print("ARI", ari, "CA RMSD per state", rmsd, "start", start, "rigid residual", rigid_rms)
    # measured: ARI 0.915, RMSD 3.9 / 0.5 Å from 12.7 Å, after 24 epochs
    assert ari > 0.85, ari
    assert max(rmsd) < 0.4 * start, (rmsd, start)
    assert rigid_rms < 2.0, rigid_rms
