"""Representations (pixel, wavelet), the conditioned UNet's null condition, EMA and min-SNR."""

import pytest
import torch

from medsynth.errors import ConfigError
from medsynth.models.ema import WarmupEMA, build_ema
from medsynth.models.losses import min_snr_weight
from medsynth.models.networks import ConditionedUNet
from medsynth.models.representation import (
    PixelRepresentation,
    WaveletRepresentation,
    build_representation,
    default_representation_name,
)

TINY = {
    "spatial_dims": 3,
    "in_channels": 8,
    "out_channels": 8,
    "channels": [8, 16],
    "attention_levels": [False, False],
    "num_res_blocks": 1,
    "norm_num_groups": 4,
    "num_head_channels": 8,
}


def test_wavelet_round_trip_is_exact_and_bands_stay_in_unit_range():
    torch.manual_seed(0)
    volume = torch.rand(3, 1, 16, 12, 20) * 2 - 1
    rep = WaveletRepresentation()
    coefficients = rep.encode(volume)
    assert coefficients.shape == (3, 8, 8, 6, 10)
    assert rep.latent_shape((16, 12, 20)) == (8, 8, 6, 10)
    assert coefficients.abs().max() <= 1.0 + 1e-6
    assert torch.allclose(rep.decode(coefficients), volume, atol=1e-6)
    # channel 0 is the low-pass band: a scaled 2x2x2 mean
    mean = torch.nn.functional.avg_pool3d(volume, 2)
    assert torch.allclose(coefficients[:, :1], mean, atol=1e-6)
    extreme = torch.ones(1, 1, 4, 4, 4)
    assert torch.allclose(rep.encode(extreme)[:, 0], torch.ones(1, 2, 2, 2), atol=1e-6)


def test_wavelet_rejects_odd_sizes_and_pixel_is_identity():
    with pytest.raises(ValueError, match="even"):
        WaveletRepresentation().encode(torch.zeros(1, 1, 5, 4, 4))
    x = torch.randn(2, 1, 4, 4, 4)
    assert PixelRepresentation().encode(x) is x
    assert PixelRepresentation().latent_shape((4, 6, 8)) == (1, 4, 6, 8)


def test_build_representation_and_default():
    assert build_representation("wavelet").name == "wavelet"
    assert default_representation_name((64, 64, 64), 64) == "wavelet"
    assert default_representation_name((32, 64, 64), 64) == "pixel"
    assert default_representation_name((32, 64, 64), 32) == "wavelet"
    with pytest.raises(ConfigError, match="model.representation"):
        build_representation("fourier")


def test_conditioned_unet_null_condition_and_drop_mask():
    torch.manual_seed(0)
    net = ConditionedUNet(
        TINY, num_classes=2, num_covariates=1, covariate_mean=[50.0], covariate_std=[10.0]
    ).eval()
    with torch.no_grad():  # MONAI zero-initialises the output conv: randomise everything
        for param in net.parameters():
            param.normal_(0.0, 0.2)
    x, t = torch.randn(2, 8, 4, 4, 4), torch.tensor([10, 500])
    labels, cov = torch.tensor([0, 1]), torch.tensor([[40.0], [70.0]])
    with torch.no_grad():
        cond = net(x, t, labels, cov)
        null = net(x, t)
        dropped = net(x, t, labels, cov, drop_condition=torch.tensor([True, False]))
    assert not torch.allclose(cond, null)
    assert torch.allclose(dropped[0], null[0], atol=1e-5)
    assert torch.allclose(dropped[1], cond[1], atol=1e-5)


def test_ema_warmup_and_frozen():
    net = torch.nn.Linear(2, 2)
    ema = build_ema(net, decay=0.9, warmup=True, warmup_steps=10)
    assert not any(p.requires_grad for p in ema.parameters())
    ema.update_parameters(net)  # first update copies
    assert torch.allclose(ema.module.weight, net.weight)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update_parameters(net)  # n=1: decay min(0.9, 2/11)
    d = WarmupEMA(0.9, True, 10).current_decay(1)
    assert d == pytest.approx(2 / 11)
    assert WarmupEMA(0.9, True, 20).current_decay(1) == pytest.approx(2 / 21)
    assert WarmupEMA(0.9, False, 10).current_decay(1) == 0.9
    assert torch.allclose(ema.module.weight, net.weight - d * 1.0, atol=1e-6)


@pytest.mark.parametrize("process", ["ddpm", "rflow"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction", "flow"])
def test_min_snr_weight_is_min_snr_on_the_x0_loss(process, prediction_type):
    """w * |out_hat - out|^2 == min(SNR, gamma) * |x0_hat - x0|^2 for every prediction type (Hang et al. 2023)."""
    from medsynth.models.bundle import DiffusionSettings
    from medsynth.models.noise import NoiseProcess

    settings = DiffusionSettings(1000, "scaled_linear_beta", 0.0005, 0.0195, prediction_type, process=process)
    noise = NoiseProcess(settings)
    t = torch.tensor([5, 300, 900])
    x0, eps = torch.randn(3, 1, 2, 2, 2, dtype=torch.float64), torch.randn(3, 1, 2, 2, 2, dtype=torch.float64)
    x_t = noise.add_noise(x0, eps, t)
    out = noise.target(x0, eps, t)
    wrong = out + 0.01 * torch.randn_like(out)
    x0_wrong = torch.stack(
        [noise.denoised(wrong[i : i + 1], x_t[i : i + 1], float(noise.alpha[k]), float(noise.sigma[k]))[0][0] for i, k in enumerate(t)]
    )
    x0_loss = (x0_wrong - x0).pow(2).flatten(1).mean(1)
    out_loss = (wrong - out).pow(2).flatten(1).mean(1)
    weights = min_snr_weight(noise, t, 5.0).double()
    torch.testing.assert_close(weights * out_loss, noise.snr(t).double().clamp(max=5.0) * x0_loss, rtol=1e-3, atol=1e-9)
