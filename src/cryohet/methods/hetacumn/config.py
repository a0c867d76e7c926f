"""The typed config of a HetACUMN run (pydantic only: the command line reads its defaults).

HetACUMN (Chen, Wang, Yao 2023; METHODS.md §5): an amortised encoder predicts each image's
pose and conformation; a neural field decodes them (task 1); an auxiliary task renders
images at random poses from a latent and trains the encoder to recover that pose and
latent with the decoder's gradients stopped (task 2), which pushes viewing direction out
of the latent. No code or settings were published: the weights below are cryohet's.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ...config import StrictModel
from ...io.source import ParticleSource
from ..field_config import FieldConfig
from ..run_fields import invert_field, snapshot_every_field
from ..search_config import SearchConfig

__all__ = ["HetacumnConfig", "EncoderConfig", "PoseTaskConfig", "HetacumnOptimConfig", "WarmStartConfig"]


class EncoderConfig(StrictModel):
    """The shared pose + conformation encoder (:mod:`cryohet.networks.pose_encoder`)."""

    heads: int = Field(
        1, ge=1, description="pose heads per image (several: cryoSPIN's multi-head, best head wins; with classified "
        "rotations a second head did not pay: 16.0 against 16.1 deg in benchmarks/hetacumn_task2_curve.py)"
    )  # fmt: skip
    input_box: int = Field(64, ge=16, description="images are Fourier-cropped to this box before the CNN")
    channels: tuple[int, ...] = Field(
        (16, 32, 64, 128), description="channels of the strided convolutions (at D=64 on one CPU thread, load 3.2: "
        "7 260 images/s; (32, 64, 128, 256) ran 1 490, below the 2 000 inference needs)"
    )  # fmt: skip
    hidden: int = Field(256, gt=0, description="width of the layer before the heads")
    rotation_grid_level: int | None = Field(
        1, ge=0, le=2, description="classify each image's rotation over the HEALPix grid of this level (72 x 8^level "
        "rotations; the heads are the highest peaks, refined below the grid spacing); None regresses the 6D "
        "parametrisation. Task 2 alone from the true maps of simulated igg-1d (SNR 0.1, box 32, 30 000 steps): "
        "median error on real images 15.7 deg at level 1, 15.6 at level 2 (inference ~20 % slower), 79.5 regressed"
    )  # fmt: skip

    @field_validator("rotation_grid_level", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        """``"none"`` (the CLI's and the benchmarks' word for regressed rotations) is None."""
        return None if isinstance(value, str) and value.strip().lower() == "none" else value


class PoseTaskConfig(StrictModel):
    """Task 2: images rendered at random poses train the encoder to recover pose and latent."""

    weight: float = Field(1.0, ge=0, description="weight of task 2 against task 1 (0: the ablation without it)")
    images: float = Field(
        1.0, gt=0, description="rendered images per real image of a batch. On the igg-1d set of "
        "warm_start.encoder_steps (20 000 steps), 3 gave median errors of 12.8 / 22.3 deg on trained / unseen "
        "particles against 13.5 / 23.4 at 1, for 1.5x the encoder epoch's time (at 2 000 steps: 26.2 / 44.1 "
        "against 27.1 / 54.7)"
    )  # fmt: skip
    prior_fraction: float = Field(
        0.5, ge=0, le=1, description="share of rendered images whose latent is drawn from N(0, I) (the rest: the "
        "encoder's latents of the batch)"
    )  # fmt: skip
    latent_weight: float = Field(1.0, ge=0, description="weight of |E_z(rendered) - z|^2 in task 2")
    shift_weight: float = Field(1.0, ge=0, description="weight of the shift error (in units of the shift range)")
    noise_start: float = Field(
        1.0, ge=0, le=1, description="noise of the rendered images at the start of the warm start's encoder epoch, "
        "as a fraction of the data's; it rises linearly to the data's over the epoch's first half (1: none)"
    )  # fmt: skip


class WarmStartConfig(StrictModel):
    """Ab initio warm start (ours; the paper has none): the shared pose search finds each
    image's pose against the field as trained so far, the field learns at those poses and
    the encoder learns to predict them; then the encoder's poses take over (amortised)."""

    pretrain_images: int = Field(
        10000, ge=0, description="images of the pretraining pass (random poses: the field learns the rotational "
        "average; DRGN-AI's 10k)"
    )  # fmt: skip
    search_images: int = Field(
        20000, ge=0, description="image-searches in all (epochs: max(2, ceil(search_images / N))); 0: no search, "
        "the encoder alone from a blank field (the paper's training, which did not converge on the test set: "
        "median pose error 123 deg)"
    )  # fmt: skip
    distill_weight: float = Field(
        1.0, ge=0, description="weight of the encoder's error on the searched poses (its pose-task loss: "
        "cross-entropy or squared Frobenius, + shift) against task 2's. With 20 000 encoder steps on the igg-1d set "
        "of encoder_steps, the median errors on trained / unseen particles were 13.5 / 23.4 deg at 1 and 16.6 / "
        "22.7 at 0.3: less memorised, no better on new particles; at 0 (task 2 alone, 2 000 steps) at chance"
    )  # fmt: skip
    in_plane_augment: bool = Field(
        True, description="the encoder learns each real image's searched pose from the image turned in plane by a "
        "random angle, the pose turned with it (a particle never looks the same twice, so the encoder cannot "
        "memorise it); the latent and task 1 see the images as they are. Trained on 1 000 of 4 000 simulated igg-1d "
        "particles (SNR 0.1, box 32, 30 000 encoder "
        "steps), the encoder's median pose error on the 3 000 it never saw was 20.7 deg with it against 33.3 "
        "without (12.7 and 10.7 deg on the particles it learnt)"
    )  # fmt: skip
    holdout: float = Field(
        0.05, ge=0, le=0.5, description="share of the particles (chosen by index) whose searched poses the encoder "
        "never learns, to show whether it generalises: the log's encoder_vs_search_heldout_deg is its disagreement "
        "with the search on them, beside encoder_vs_search_deg on the learnt ones; a large gap means `cryohet infer` "
        "on new particles is unreliable (with 1 000 particles at SNR 0.1: 20 deg on the learnt ones, 124 deg, "
        "chance, on unseen ones)"
    )  # fmt: skip
    encoder_steps: int = Field(
        20000, ge=0, description="steps of the encoder epoch after the search epochs (field frozen; images rendered "
        "at random poses plus the real images at their searched poses; ~8 min at box 32 on one CPU thread). Trained "
        "on 1 000 of 4 000 simulated igg-1d particles (SNR 0.1, box 32), the encoder's median pose error was 27.1 "
        "deg on them and 54.7 on the 3 000 it never saw after 2 000 steps (the default before method version 6), "
        "13.5 and 23.4 after 20 000. An encoder trained on task 2 alone, from the "
        "true maps of simulated igg-1d (SNR 0.1, box 32, batch 32), reached a median error on the real images of "
        "33 deg after 5 000 steps, 18.5 after 15 000 and 15.7 after 30 000 with rotations classified (regressed: "
        "113, 105 and 79.5 deg)"
    )  # fmt: skip
    search_latents: bool = Field(
        True, description="the warm start's field has a latent per image, learnt beside the searched poses "
        "(DRGN-AI's auto-decoded table), and each image is searched against the field at the k-means centre of its "
        "latent (search.clusters grids); the encoder learns the latents only with latent_distill_weight. False: a "
        "homogeneous field (z = 0; method version 3). On simulated assembly (2 000 images, 10 states, SNR 0.1, "
        "D=32) the table's search posed 86 % of the particles within 15 deg modulo the dimer's mate (two seeds), "
        "the homogeneous one 81-82 %, and the run's latent ARI rose from 0.40 to 0.43-0.45"
    )  # fmt: skip
    latent_distill_weight: float = Field(
        0.0, ge=0, description="weight of |E_z(image) - z_table|^2: the encoder learning the warm start's table "
        "latents beside the searched poses (search_latents). Off by default: on the one-state test set (300 images, "
        "D=32, 25 % of the particles held out of the encoder's targets) the encoder's median pose error on the "
        "held-out particles was 98 deg with it at 1 (it memorised the particles) and 25 deg at 0, against 16.6 deg "
        "with a homogeneous warm start"
    )  # fmt: skip
    lr_latents: float = Field(
        0.1, gt=0, description="row-wise Adam on the warm start's latent table (as cryohet drgnai's optim.lr_latents)"
    )
    search: SearchConfig = Field(default_factory=SearchConfig)
    task1_poses: Literal["encoder", "searched"] = Field(
        "searched", description="poses of task 1 in the amortised epochs: the searched ones, refined by gradient "
        "descent as DRGN-AI's (semi-amortised: the field learns at them, the encoder learns to predict them; new "
        "particles are still inferred by the encoder alone) or the encoder's (amortised, the paper's). From one warm "
        "start on simulated assembly (2 000 images, SNR 0.1, D=32, 12 epochs): k-means ARI of the encoder's "
        "latents 0.25 searched, 0.04 encoder"
    )  # fmt: skip
    lr_rotations: float = Field(
        1e-3, gt=0, description="Adam on the searched poses' 6D rotations (task1_poses=searched)"
    )
    lr_shifts_px: float = Field(1e-3, gt=0, description="Adam on the searched poses' shifts, px per step")


class HetacumnOptimConfig(StrictModel):
    batch_size: int = Field(
        32, gt=0, description="images per step (DRGN-AI's 32): at 64 the warm start's search on simulated assembly "
        "(2 000 images, SNR 0.1, trained at D=32) stalled with the field half as often updated (0 of 2 000 poses "
        "within 10 deg); at 32 it tracked DRGN-AI's"
    )  # fmt: skip
    lr_encoder: float = Field(1e-3, gt=0)
    lr_field: float = Field(1e-3, gt=0)
    beta: float = Field(
        0.1, ge=0, description="weight of KL(q(z|image) || N(0, I)); measured on the two-state test set (D=24, SNR "
        "0.3, given poses): at 1 (the ELBO at unit noise) the latent collapsed (KL 0.01 per image, ARI 0 after 60 "
        "epochs); at 0.1 the states separated (ARI 0.90 after 80 epochs at batch 16)"
    )  # fmt: skip


class HetacumnConfig(StrictModel):
    """Everything that defines a HetACUMN run (the resolved ``config.yaml``)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "optim.batch_size", "snapshot_every", "warm_start.task1_poses")

    method: Literal["hetacumn"] = "hetacumn"
    method_version: int = Field(10, description="10: with the readout the latent is the subspace coordinates "
                                "alone (latent_encoder_part false; version-9 runs added the encoder's own output "
                                "and are read as such); 9: the encoder's latent reads the image's coordinates in the "
                                "seed's subspace at its pose (latent_readout; version-8 runs did not and are read "
                                "as such); 8: with given poses the encoder learns the seed in an epoch of its "
                                "own (latent_init_steps; version-7 runs had none and are read as such); "
                                "7: the encoder's latent starts from a subspace seed (latent_init; "
                                "runs before it had none and are read as such); "
                                "6: the encoder epoch takes 20 000 steps (was 2 000); 5: poses.npz "
                                "holds the poses the field was trained at (the searched ones when semi-amortised), "
                                "the encoder's go to extras/encoder_poses.npz; "
                                "4: the warm start learns a latent per image with the searched "
                                "poses (version-3 runs had a homogeneous warm start and are read as such); 3: the "
                                "encoder learns the searched poses from images turned in "
                                "plane (version-2 runs did not and are read as such); 2: the encoder classifies "
                                "rotations by default (version-1 runs regress them and are read as such)")  # fmt: skip
    data: ParticleSource
    out: str
    poses_mode: Literal["abinit", "fixed"] = Field(
        "abinit",
        description="abinit: the encoder predicts the poses (given ones ignored), after the warm start; "
        "fixed: keep the given poses",
    )
    zdim: int = Field(8, ge=1, description="latent dimension")
    latent_init: Literal["subspace", "random"] = Field(
        "subspace", description="subspace: once the poses are known (after the search; with given poses, at the "
        "start) each particle's coordinates in a linear subspace of the heterogeneity fitted at them (as DRGN-AI's "
        "latent_init) are what the field decodes and the encoder learns in the encoder epoch and the first "
        "latent_init_epochs amortised epochs; then the encoder's latents take over (methods/hetacumn/latent_seed.py)"
        "; random: the latent learnt from reconstruction alone"
    )  # fmt: skip
    latent_init_iterations: int = Field(6, ge=1, description="EM iterations of the subspace (latent_init)")
    latent_init_weight: float = Field(
        1.0, gt=0, description="weight of the encoder's error on the seed, |E_z(image) - z_seed|^2, while it holds"
    )
    latent_init_epochs: int = Field(
        4, ge=0, description="amortised epochs in which task 1 decodes the seed latents (latent_init subspace). On "
        "simulated igg-1d (4 000 images, SNR 0.05, box 32) the encoder's k-means ARI (k=20) was 0.136 after 4 held "
        "epochs, 0.085 one epoch after the release and 0.135 after 8 free ones (0.001 without the seed); with given "
        "poses 0.481 after 12 epochs (4 held), 0.451 with all 12 held, and 0.08 without a hold"
    )  # fmt: skip
    latent_init_steps: int = Field(
        4000, ge=0, description="with given poses (latent_init subspace, latent_encoder_part or no latent_readout): "
        "steps of an epoch before the amortised ones in which the encoder learns the seed alone (ab initio it "
        "learns it in the warm start's encoder epoch). Learnt beside task 1 and task 2 alone it was not: on "
        "simulated igg-1d (4 000 images, SNR 0.05, box 32) the "
        "encoder's error on the seed stayed at 1.94 of 2.0 over 4 held epochs; alone, 0.06 after 2 000 steps and "
        "0.050 after 4 000 (k-means ARI k=20 0.52 against the seed's 0.56)"
    )  # fmt: skip
    latent_readout: bool = Field(
        True, description="with latent_init subspace: the encoder's latent is its own output plus the image's "
        "coordinates in the seed's subspace at the image's pose (the subspace's E-step, a k x k solve per image: "
        "the seed at the poses it was fitted at), so that new particles get their subspace coordinates at their "
        "poses rather than what an encoder learnt from the training images; the subspace is kept in model.pt. On "
        "simulated igg-1d (SNR 0.05, box 32, given poses; trained on 1 000 of 4 000, 12 epochs) the latent's k-means "
        "ARI (k=20) on the 3 000 unseen was 0.000 without it (0.205 on the trained), 0.313 with it (0.328; infer "
        "--poses input)"
    )  # fmt: skip
    latent_encoder_part: bool = Field(
        False, description="with latent_readout: the latent is the encoder's own output plus the subspace "
        "coordinates at the pose (true, method version 9), or the coordinates alone (false: the encoder predicts "
        "the poses and the latent's spread, and a particle's latent is its coordinates at its pose, the amortised "
        "E-step of the seed's subspace). The encoder's own part learnt the training particles, not the function "
        "(alone it classified simulated assembly's 1 000 trained particles at ARI 0.284 and the 3 000 unseen at "
        "0.153); without it the unseen particles classify better (1 000 / 3 000 splits, box 32, ARI of the unseen "
        "at their refined poses: assembly ab initio 0.319 -> 0.391 (k=10), igg-1d ab initio 0.103 -> 0.119, igg-1d "
        "given poses 0.313 -> 0.333 (k=20))"
    )  # fmt: skip
    box: int | None = Field(None, description="train at this box (Fourier-cropped); default: the data's")
    epochs: int = Field(30, ge=0, description="amortised epochs (after the warm start's pretraining and search epochs)")
    field: FieldConfig = Field(default_factory=FieldConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    pose_task: PoseTaskConfig = Field(default_factory=PoseTaskConfig)
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    optim: HetacumnOptimConfig = Field(default_factory=HetacumnOptimConfig)
    snapshot_every: int = snapshot_every_field()
    invert: bool | None = invert_field()
    device: str = "cpu"
    num_workers: int = Field(0, ge=0)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _read_older_versions(cls, data: Any) -> Any:
        """Runs written before version 2 regressed rotations (no ``rotation_grid_level``);
        runs written before version 3 showed the encoder the images as they are (no
        ``warm_start.in_plane_augment``); runs written before version 4 searched a homogeneous
        field (no ``warm_start.search_latents``); runs written before version 6 fitted the
        encoder for 2 000 steps (a config without ``encoder_steps`` is read so); runs written
        before version 7 had no latent seed (``latent_init`` random); runs written before version 8
        had no encoder epoch for the seed with given poses (``latent_init_steps`` 0); runs written
        before version 9 had no subspace readout (``latent_readout`` False); runs written
        before version 10 added the encoder's own output to it (``latent_encoder_part`` True)."""
        if not isinstance(data, dict) or data.get("method_version") not in (1, 2, 3, 4, 5, 6, 7, 8, 9):
            return data
        version = data.get("method_version")
        data = {"latent_encoder_part": True, **data}
        if version == 9:
            return data
        data = {"latent_readout": False, **data}
        if version == 8:
            return data
        data = {"latent_init_steps": 0, **data}
        if version == 7:
            return data
        data = {"latent_init": "random", **data}
        if version == 6:
            return data
        if version == 1:
            encoder = data.get("encoder") if isinstance(data.get("encoder"), dict) else {}
            data = {**data, "encoder": {"rotation_grid_level": None, **encoder}}
        warm = data.get("warm_start") if isinstance(data.get("warm_start"), dict) else {}
        older: dict[str, Any] = {"encoder_steps": 2000}
        if version <= 3:
            older["search_latents"] = False
        if version <= 2:
            older["in_plane_augment"] = False
        return {**data, "warm_start": {**older, **warm}}

    @model_validator(mode="after")
    def _check_search(self) -> HetacumnConfig:
        if self.warm_start.search.local_step_deg:  # shared options that only DRGN-AI's joint epochs use
            raise ValueError("search.local_step_deg refines poses in DRGN-AI's joint epochs; HetACUMN does not use it")
        return self

    def warm_start_epochs(self, n_images: int) -> tuple[int, int]:
        """Pretraining and search epochs for ``n_images`` (none with fixed poses)."""
        if self.poses_mode != "abinit":
            return 0, 0
        from ...pose.abinit_schedule import count_epochs

        w = self.warm_start
        return count_epochs(w.pretrain_images, n_images, 1), count_epochs(w.search_images, n_images, 2)
