"""x0 clamping (``clip_sample``) uses the representation's per-channel bounds, from the sampler to generation."""

from __future__ import annotations

import math

import pytest
import torch

from medsynth.models.bundle import DiffusionSettings
from medsynth.models.representation import WaveletRepresentation
from medsynth.sampling.samplers import build_sampler, make_denoiser


def _settings(clip: bool = True) -> DiffusionSettings:
    return DiffusionSettings(1000, "scaled_linear_beta", 0.0005, 0.0195, "sample", clip_sample=clip)


def test_denoiser_clamps_x0_per_channel_and_keeps_eps_consistent():
    settings = _settings()
    grid = build_sampler("dpmpp", settings, steps=5).grid
    bounds = WaveletRepresentation("lowband").clip_bounds()
    x = torch.randn(2, 8, 2, 2, 2, dtype=torch.float64)
    denoise = make_denoiser(lambda x_t, t: torch.full_like(x_t, 5.0), settings, grid, bounds)
    x0, eps = denoise(x, 1)
    assert torch.allclose(x0[:, 0], torch.ones_like(x0[:, 0]))
    assert torch.allclose(x0[:, 1:], torch.full_like(x0[:, 1:], 2 * math.sqrt(2)))
    a, s = grid.alpha[1], grid.sigma[1]
    assert torch.allclose(a * x0 + s * eps, x)
    flat, _ = make_denoiser(lambda x_t, t: torch.full_like(x_t, -5.0), settings, grid)(x, 1)
    assert torch.equal(flat, -torch.ones_like(flat))  # no bounds: [-1, 1]
    free, _ = make_denoiser(lambda x_t, t: torch.full_like(x_t, 5.0), _settings(False), grid, bounds)(x, 1)
    assert torch.equal(free, torch.full_like(free, 5.0))


@pytest.mark.parametrize("scaling,detail", [("uniform", 1.0), ("lowband", 2 * math.sqrt(2))])
def test_generation_clamps_to_the_bundle_representation_bounds(scaling, detail, monkeypatch):
    """A network whose x0 overshoots everywhere ends, through generate_volumes, on each band's bound."""
    from medsynth.sampling.generate import generate_volumes
    from tests.test_sampling_generate import tiny_bundle

    bundle = tiny_bundle(representation="wavelet", prediction_type="sample", shape=(8, 8, 8))
    bundle.representation = WaveletRepresentation(scaling)

    class Overshoot(torch.nn.Module):
        def forward(self, x, timesteps, class_labels=None, covariates=None):
            return torch.full_like(x, 7.0)

    bundle.network = Overshoot()
    seen = []
    decode = bundle.representation.decode
    monkeypatch.setattr(bundle.representation, "decode", lambda c: seen.append(c) or decode(c))
    generate_volumes(bundle, seeds=[0], sampler="dpmpp", steps=4, precision="32")
    latent = seen[0]
    assert torch.allclose(latent[:, 0], torch.ones_like(latent[:, 0]), atol=1e-5)
    assert torch.allclose(latent[:, 1:], torch.full_like(latent[:, 1:], detail), atol=1e-5)
