"""generate_volumes on a tiny random MONAI UNet: samplers, determinism, conditions, guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medsynth.errors import ConfigError
from medsynth.models.bundle import (
    ConditioningSpec,
    DiffusionSettings,
    Geometry,
    IntensityMapping,
    SamplingBundle,
)
from medsynth.models.noise import NoiseProcess
from medsynth.models.representation import build_representation
from medsynth.sampling.generate import generate_volumes, sample_seed
from medsynth.sampling.samplers import DEFAULT_STEPS, SAMPLERS, build_sampler

SHAPE = (16, 16, 16)
SPACING = (1.5, 1.25, 2.0)


class TinyConditionalUNet(nn.Module):
    """MONAI DiffusionModelUNet wrapped to the bundle's network signature (null class = num_classes)."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        self.num_classes = num_classes
        self.unet = DiffusionModelUNet(
            spatial_dims=3,
            in_channels=channels,
            out_channels=channels,
            channels=(8, 16),
            attention_levels=(False, False),
            num_res_blocks=1,
            norm_num_groups=8,
            num_class_embeds=num_classes + 1 if num_classes else None,
        )

    def forward(self, x, timesteps, class_labels=None, covariates=None):
        if self.num_classes:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            return self.unet(x, timesteps, class_labels=class_labels)
        return self.unet(x, timesteps)


def tiny_bundle(
    representation: str = "pixel",
    num_classes: int = 0,
    guidance_trained: bool = False,
    prediction_type: str = "epsilon",
    shape=SHAPE,
    num_train_timesteps: int = 1000,
    seed: int = 0,
) -> SamplingBundle:
    torch.manual_seed(seed)
    rep = build_representation(representation)
    channels = rep.latent_shape(shape)[0]
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-10.0, 20.0, -5.0]
    return SamplingBundle(
        network=TinyConditionalUNet(channels, num_classes).eval(),
        representation=rep,
        diffusion=DiffusionSettings(
            num_train_timesteps=num_train_timesteps,
            schedule="scaled_linear_beta",
            beta_start=0.0005,
            beta_end=0.0195,
            prediction_type=prediction_type,
        ),
        conditioning=ConditioningSpec(
            num_classes=num_classes,
            class_names=[str(i) for i in range(num_classes)],
            label_key="lesion" if num_classes else None,
            guidance_trained=guidance_trained,
        ),
        geometry=Geometry(shape=tuple(shape), spacing=SPACING, affine=affine),
        intensity=IntensityMapping(mode="ct", low=-1000.0, high=1000.0, unit="HU"),
        checkpoint_path="<in memory>",
        checkpoint_sha256="0" * 64,
        config_hash="test",
        used_ema=True,
    )


class GaussianOracle(nn.Module):
    """The exact denoiser for data ~ N(mu, s^2) per voxel, as a network with the given prediction type."""

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str, mu: float = 0.2, s: float = 0.3):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.prediction_type, self.mu, self.s = prediction_type, mu, s

    def forward(self, x, timesteps, class_labels=None, covariates=None):
        a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        mu = self.mu
        if class_labels is not None:  # class k has mean mu * (1 - 2k): +mu, -mu; no label: mu
            mu = self.mu * (1 - 2 * class_labels.float()).view(-1, 1, 1, 1, 1)
        x0 = mu + a.sqrt() * self.s**2 / (a * self.s**2 + 1 - a) * (x - a.sqrt() * mu)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "sample":
            return x0
        return a.sqrt() * eps - (1 - a).sqrt() * x0  # v


def oracle_bundle(prediction_type: str = "epsilon", **kwargs) -> SamplingBundle:
    bundle = tiny_bundle(prediction_type=prediction_type, **kwargs)
    bundle.diffusion.clip_sample = False
    alphas = NoiseProcess(bundle.diffusion).alpha ** 2
    bundle.network = GaussianOracle(alphas, prediction_type)
    return bundle


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp3m"])
def test_generate_volumes_reproduces_a_known_distribution(sampler):
    """Through the whole generation path (batches, float32 network, decode): the oracle's N(0.2, 0.3^2).
    Every sampler's own oracle test is in test_sampling_samplers.py."""
    bundle = oracle_bundle("epsilon")
    volumes = generate_volumes(bundle, seeds=[1, 2], sampler=sampler, precision="32")
    assert volumes.shape == (2, 1, *SHAPE) and volumes.dtype == torch.float32
    assert abs(volumes.mean().item() - 0.2) < 0.01
    assert abs(volumes.std().item() - 0.3) < 0.01


@pytest.mark.parametrize(
    "sampler,eta",
    [("ddpm", 1.0), ("ddim", 0.7), ("pndm", 0.0), ("dpmpp", 0.0), ("dpmpp3m", 0.0), ("dpmpp3m", 1.0), ("heun", 0.0)],
)
def test_voxels_do_not_depend_on_batch_size_or_position(sampler, eta):
    bundle = tiny_bundle(num_train_timesteps=10, shape=(8, 8, 8))  # ddpm runs every training step
    kwargs = dict(sampler=sampler, steps=None if sampler == "ddpm" else 6, eta=eta, precision="32", grid="uniform")
    together = generate_volumes(bundle, seeds=[11, 12, 13], batch_size=3, **kwargs)
    one_by_one = generate_volumes(bundle, seeds=[11, 12, 13], batch_size=1, **kwargs)
    alone = generate_volumes(bundle, seeds=[13], batch_size=2, **kwargs)
    assert torch.equal(together, one_by_one)
    assert torch.equal(together[2], alone[0])
    assert not torch.equal(together[0], together[1])


def test_bf16_autocast_is_also_batch_invariant():
    bundle = tiny_bundle(shape=(8, 8, 8))
    a = generate_volumes(bundle, seeds=[1, 2, 3], steps=4, batch_size=3, precision="bf16")
    b = generate_volumes(bundle, seeds=[1, 2, 3], steps=4, batch_size=1, precision="bf16")
    assert torch.equal(a, b)


def test_wavelet_bundle_decodes_to_the_image_shape():
    bundle = tiny_bundle(representation="wavelet")
    volumes = generate_volumes(bundle, seeds=[0], sampler="dpmpp", steps=3, precision="32")
    assert volumes.shape == (1, 1, *SHAPE)
    assert volumes.min() >= -1 and volumes.max() <= 1


def test_labels_and_guidance_steer_a_conditional_model():
    """Oracle of class means +0.2 / -0.2 (null: +0.2): labels pick the mean, guidance pushes beyond it."""
    bundle = oracle_bundle(num_classes=2, guidance_trained=True)
    kwargs = dict(seeds=[4, 4], sampler="dpmpp", steps=10, precision="32")
    plain = generate_volumes(bundle, class_labels=[0, 1], **kwargs)
    guided = generate_volumes(bundle, class_labels=[0, 1], guidance_scale=2.0, **kwargs)
    assert abs(plain[0].mean().item() - 0.2) < 0.02 and abs(plain[1].mean().item() + 0.2) < 0.02
    assert torch.equal(guided[0], plain[0])  # class 0 = null branch here, guidance changes nothing
    assert guided[1].mean().item() < plain[1].mean().item() - 0.1


def test_condition_errors_name_the_key():
    unconditional = tiny_bundle()
    with pytest.raises(ConfigError, match="guidance_scale.*unconditional"):
        generate_volumes(unconditional, seeds=[0], steps=2, guidance_scale=2.0)
    with pytest.raises(ConfigError, match="label.*without class labels"):
        generate_volumes(unconditional, seeds=[0], steps=2, class_labels=[1])
    no_dropout = tiny_bundle(num_classes=2, guidance_trained=False)
    with pytest.raises(ConfigError, match="guidance_scale.*condition dropout"):
        generate_volumes(no_dropout, seeds=[0], steps=2, class_labels=[0], guidance_scale=2.0)
    with pytest.raises(ConfigError, match="class index 2 is not"):
        generate_volumes(no_dropout, seeds=[0], steps=2, class_labels=[2])
    with pytest.raises(ConfigError, match="needs a class label"):
        generate_volumes(no_dropout, seeds=[0], steps=2)
    with pytest.raises(ConfigError, match="sampler"):
        generate_volumes(unconditional, seeds=[0], sampler="unipc")
    with pytest.raises(ConfigError, match="steps"):
        generate_volumes(unconditional, seeds=[0], steps=5000)


def test_sample_seed_is_stable_and_distinct():
    seeds = [sample_seed(0, i) for i in range(1000)] + [sample_seed(1, i) for i in range(1000)]
    assert len(set(seeds)) == 2000
    assert sample_seed(0, 5) == sample_seed(0, 5)
    assert all(0 <= s < 2**63 for s in seeds)


def test_every_sampler_has_a_default_step_count():
    settings = tiny_bundle().diffusion
    assert {name: build_sampler(name, settings).num_steps for name in SAMPLERS} == {
        name: 1000 if steps is None else steps for name, steps in DEFAULT_STEPS.items()
    }
