"""Representations (pixel, wavelet and its scalings), the conditioned UNet's null condition, EMA and min-SNR."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from medsynth.errors import ConfigError
from medsynth.models.ema import WarmupEMA, build_ema
from medsynth.models.losses import min_snr_weight
from medsynth.models.networks import ConditionedUNet
from medsynth.models.paired import build_paired_representation
from medsynth.models.representation import (
    HAAR_GAIN,
    PixelRepresentation,
    WaveletRepresentation,
    build_representation,
    default_representation_name,
)

ROOT = Path(__file__).resolve().parents[1]

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


@pytest.mark.parametrize("scaling", ["uniform", "lowband"])
def test_wavelet_scalings_round_trip_and_stay_inside_their_clip_bounds(scaling):
    torch.manual_seed(1)
    volume = torch.rand(2, 1, 8, 10, 12, dtype=torch.float64) * 2 - 1
    rep = WaveletRepresentation(scaling)
    coefficients = rep.encode(volume)
    low, high = rep.clip_bounds()
    assert low.shape == high.shape == (8,)
    assert torch.all(coefficients <= high.view(1, 8, 1, 1, 1) + 1e-9)
    assert torch.all(coefficients >= low.view(1, 8, 1, 1, 1) - 1e-9)
    assert torch.allclose(rep.decode(coefficients), volume, atol=1e-12)
    single = WaveletRepresentation(scaling).encode(volume.float())  # float32 path as in training
    assert torch.allclose(rep.decode(single).double(), volume, atol=1e-6)


def test_lowband_rescales_only_the_low_band_and_its_bounds_are_tight():
    """lowband = uniform with the 7 detail bands multiplied back by 2*sqrt(2) (their orthonormal scale);
    the bounds are reached: a constant +1 volume fills the low band, a 3D checkerboard the ddd band."""
    torch.manual_seed(2)
    volume = torch.rand(1, 1, 8, 8, 8, dtype=torch.float64) * 2 - 1
    uniform, lowband = WaveletRepresentation("uniform"), WaveletRepresentation("lowband")
    a, b = uniform.encode(volume), lowband.encode(volume)
    assert torch.allclose(b[:, 0], a[:, 0])
    assert torch.allclose(b[:, 1:], a[:, 1:] * HAAR_GAIN)
    low, high = lowband.clip_bounds()
    assert torch.allclose(high, torch.tensor([1.0] + [2 * math.sqrt(2)] * 7, dtype=torch.float64))
    assert torch.equal(low, -high)
    assert torch.equal(uniform.clip_bounds()[1], torch.ones(8, dtype=torch.float64))
    i, j, k = torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij")
    checkerboard = ((-1.0) ** (i + j + k)).double()[None, None]
    ddd = lowband.encode(checkerboard)[:, 7]
    assert torch.allclose(ddd.abs(), torch.full_like(ddd, HAAR_GAIN))
    assert torch.allclose(lowband.encode(torch.ones(1, 1, 4, 4, 4))[:, 0], torch.ones(1, 2, 2, 2))


def test_clip_bounds_of_pixel_and_paired_representations():
    assert [b.tolist() for b in PixelRepresentation().clip_bounds()] == [[-1.0], [1.0]]
    paired = build_paired_representation("wavelet", 3, "lowband")  # image + 3 label channels
    low, high = paired.clip_bounds()
    assert high.shape == (32,)
    assert torch.equal(high, WaveletRepresentation("lowband").clip_bounds()[1].repeat(4))
    assert torch.equal(low, -high)
    assert build_paired_representation("wavelet", 0, "lowband").scaling == "lowband"
    with pytest.raises(ConfigError, match="model.wavelet_scaling"):
        build_representation("wavelet", "highband")
    with pytest.raises(ConfigError, match="model.wavelet_scaling"):
        build_representation("pixel", "highband")


@pytest.mark.parametrize("scaling", ["uniform", "lowband"])
def test_checkpoint_metadata_records_the_scaling_and_old_checkpoints_load_as_uniform(scaling):
    from medsynth.models.diffusion_module import DiffusionModule, bundle_from_metadata

    model = yaml.safe_load((ROOT / "conf/model/unet_tiny.yaml").read_text())
    assert model["wavelet_scaling"] == "lowband"  # the shipped default (conf/model/*.yaml)
    model.update(representation="wavelet", wavelet_scaling=scaling)
    diffusion = yaml.safe_load((ROOT / "conf/diffusion/ddpm.yaml").read_text())
    affine = torch.eye(4).tolist()
    module = DiffusionModule(
        {"model": model, "diffusion": diffusion, "optim": {}, "trainer": {}, "seed": 0},
        geometry={"shape": [16, 16, 16], "spacing": [1.0, 1.0, 1.0], "affine": affine, "label_classes": 2},
    )
    assert module.representation.base.scaling == scaling
    meta = module.sampling_metadata()
    assert meta["wavelet_scaling"] == scaling
    bundle = bundle_from_metadata(meta, module.network, "", "", used_ema=False)
    assert bundle.representation.base.scaling == scaling
    assert bundle.representation.clip_bounds()[1].shape == (24,)
    del meta["wavelet_scaling"]  # a checkpoint written before the key existed
    old = bundle_from_metadata(meta, module.network, "", "", used_ema=False)
    assert old.representation.base.scaling == "uniform"


@pytest.mark.parametrize("scaling", ["uniform", "lowband"])
def test_detail_gain_multiplies_only_the_detail_bands_and_their_bounds(scaling):
    torch.manual_seed(3)
    volume = torch.rand(2, 1, 8, 8, 8, dtype=torch.float64) * 2 - 1
    plain, lifted = WaveletRepresentation(scaling), WaveletRepresentation(scaling, 4.0)
    a, b = plain.encode(volume), lifted.encode(volume)
    assert torch.allclose(b[:, 0], a[:, 0])
    assert torch.allclose(b[:, 1:], 4.0 * a[:, 1:])
    assert torch.allclose(lifted.decode(b), volume, atol=1e-12)
    high = lifted.clip_bounds()[1]
    assert torch.allclose(high[1:], 4.0 * plain.clip_bounds()[1][1:])
    assert high[0] == plain.clip_bounds()[1][0]
    assert torch.all(b.abs() <= high.view(1, 8, 1, 1, 1) + 1e-9)


@pytest.mark.parametrize("gain", [0, -1.0, float("nan"), "big"])
def test_a_bad_detail_gain_is_one_config_error_naming_the_key(gain):
    with pytest.raises(ConfigError, match="model.wavelet_detail_gain"):
        build_representation("wavelet", "lowband", gain)
    with pytest.raises(ConfigError, match="model.wavelet_detail_gain"):
        build_representation("pixel", "lowband", gain)


def test_checkpoint_metadata_records_the_detail_gain_and_old_checkpoints_load_with_gain_1():
    from medsynth.models.diffusion_module import DiffusionModule, bundle_from_metadata

    model = yaml.safe_load((ROOT / "conf/model/unet_tiny.yaml").read_text())
    assert model["wavelet_detail_gain"] == 1.0  # the shipped default (conf/model/*.yaml)
    model.update(representation="wavelet", wavelet_detail_gain=3.0)
    diffusion = yaml.safe_load((ROOT / "conf/diffusion/ddpm.yaml").read_text())
    module = DiffusionModule(
        {"model": model, "diffusion": diffusion, "optim": {}, "trainer": {}, "seed": 0},
        geometry={"shape": [16, 16, 16], "spacing": [1.0, 1.0, 1.0], "affine": torch.eye(4).tolist()},
    )
    meta = module.sampling_metadata()
    assert meta["wavelet_detail_gain"] == 3.0
    assert bundle_from_metadata(meta, module.network, "", "", used_ema=False).representation.detail_gain == 3.0
    del meta["wavelet_detail_gain"]  # a checkpoint written before the key existed
    assert bundle_from_metadata(meta, module.network, "", "", used_ema=False).representation.detail_gain == 1.0


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
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction", "flow", "edm"])
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
