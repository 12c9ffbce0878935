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
    assert default_representation_name((64, 64, 64)) == "wavelet"
    assert default_representation_name((32, 64, 64)) == "pixel"
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
    ema = build_ema(net, decay=0.9)
    assert not any(p.requires_grad for p in ema.parameters())
    ema.update_parameters(net)  # first update copies
    assert torch.allclose(ema.module.weight, net.weight)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update_parameters(net)  # n=1: decay min(0.9, 2/11)
    d = WarmupEMA(0.9).current_decay(1)
    assert d == pytest.approx(2 / 11)
    assert torch.allclose(ema.module.weight, net.weight - d * 1.0, atol=1e-6)


def test_min_snr_weights():
    snr = torch.tensor([0.5, 5.0, 50.0])
    assert torch.allclose(min_snr_weight(snr, 5.0, "epsilon"), torch.tensor([1.0, 1.0, 0.1]))
    assert torch.allclose(min_snr_weight(snr, 5.0, "sample"), torch.tensor([0.5, 5.0, 5.0]))
    assert torch.allclose(min_snr_weight(snr, 5.0, "v_prediction"), torch.tensor([0.5 / 1.5, 5 / 6, 5 / 51]))
