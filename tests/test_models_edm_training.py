"""EDM training settings: ``diffusion.time_sampling`` (the law of the training timesteps, both noise
processes) and a per-channel ``diffusion.sigma_data``, from the noise process to a trained checkpoint."""

import dataclasses
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, run_train  # noqa: E402

from medsynth.cli import main as medsynth_main  # noqa: E402
from medsynth.errors import ConfigError  # noqa: E402
from medsynth.models.bundle import DiffusionSettings  # noqa: E402
from medsynth.models.checkpoint import load_for_sampling  # noqa: E402
from medsynth.models.noise import NoiseProcess  # noqa: E402

DDPM = dict(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195)


def draws(process: NoiseProcess, n: int = 50000, seed: int = 0) -> torch.Tensor:
    return process.sample_timesteps(n, torch.Generator().manual_seed(seed), torch.device("cpu"))


@pytest.mark.parametrize("process", ["ddpm", "rflow"])
def test_lognormal_draws_follow_edms_law_on_sigma_over_alpha(process):
    """ln(sigma/alpha) of the drawn timesteps has the configured mean and std (snapping to the grid of
    timesteps moves each by at most half a step in ln(sigma/alpha)); rflow never draws clean t = 0."""
    settings = DiffusionSettings(
        **DDPM, prediction_type="edm", process=process, time_sampling="lognormal", lognormal_mean=-1.0,
        lognormal_std=0.8,
    )
    noise = NoiseProcess(settings)
    t = draws(noise)
    assert t.dtype == torch.long and int(t.min()) >= (1 if process == "rflow" else 0) and int(t.max()) <= 999
    log_s = (noise.sigma / noise.alpha).log()[t]
    inside = (log_s > (noise.sigma / noise.alpha).log()[1]) & (log_s < (noise.sigma / noise.alpha).log()[-2])
    assert inside.float().mean() > 0.99  # the law lies within the trained range here: no pile-up at the ends
    assert abs(float(log_s.mean()) + 1.0) < 0.02
    assert abs(float(log_s.std()) - 0.8) < 0.02
    torch.testing.assert_close(t, draws(noise))  # the same generator seed gives the same draws


def test_lognormal_moves_training_to_low_noise_against_uniform():
    """EDM's law (-1.2, 1.2) trains ten times more often below sigma/alpha = 0.1 than uniform t does."""
    uniform = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm"))
    lognormal = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", time_sampling="lognormal"))
    below = [float(((p.sigma / p.alpha)[draws(p)] < 0.1).double().mean()) for p in (uniform, lognormal)]
    assert below[0] < 0.03 and below[1] > 0.15


@pytest.mark.parametrize("process", ["ddpm", "rflow"])
def test_logsnr_draws_are_uniform_in_log_sigma_over_alpha(process):
    """``logsnr``: ln(sigma/alpha) uniform over the trained range (mean at its middle, the std of a
    uniform law, a flat histogram), so low noise gets 10x uniform-t's share and high noise keeps a
    quarter (lognormal gives it almost none); rflow never draws clean t = 0."""
    noise = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", process=process, time_sampling="logsnr"))
    t = draws(noise)
    assert int(t.min()) >= (1 if process == "rflow" else 0) and int(t.max()) <= 999
    log_s = (noise.sigma / noise.alpha).log()
    low, high = float(log_s[1 if process == "rflow" else 0]), float(log_s[-1])
    drawn = log_s[t]
    assert abs(float(drawn.mean()) - (low + high) / 2) < 0.03 * (high - low)
    assert abs(float(drawn.std()) - (high - low) / math.sqrt(12)) < 0.03 * (high - low)
    counts = torch.histc(drawn.float(), bins=4, min=low, max=high)
    assert float(counts.min() / counts.max()) > 0.85
    torch.testing.assert_close(t, draws(noise))
    if process == "ddpm":
        s = (noise.sigma / noise.alpha)[t]
        lognormal = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", time_sampling="lognormal"))
        s_lognormal = (lognormal.sigma / lognormal.alpha)[draws(lognormal)]
        assert float((s < 0.1).double().mean()) > 0.15  # uniform t: < 0.03 (above)
        assert float((s > 7).double().mean()) > 0.2 and float((s_lognormal > 7).double().mean()) < 0.02


def test_ddpm_honours_logit_normal_times():
    """``time_sampling`` applies to DDPM as well (it used to be read for rflow only)."""
    settings = DiffusionSettings(**DDPM, prediction_type="epsilon", time_sampling="logit-normal")
    t = draws(NoiseProcess(settings), 20000)
    assert float(((t > 250) & (t < 750)).float().mean()) > 0.6  # uniform: 0.5


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"time_sampling": "beta"}, "diffusion.time_sampling"),
        ({"time_sampling": "lognormal", "lognormal_std": 0.0}, "diffusion.lognormal_std"),
        ({"time_sampling": "lognormal", "lognormal_std": math.inf}, "diffusion.lognormal_std"),
    ],
)
def test_bad_time_sampling_names_the_key(changes, key):
    with pytest.raises(ConfigError) as info:
        NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", **changes))
    assert str(info.value).startswith(key)


def test_per_channel_sigma_data_is_each_channels_own_edm():
    """With sigma_data = (s_0, s_1) every channel gets the scalar EDM of its own value, repeated over
    volume channels (4 channels = 2 volume channels x 2 representation channels); x0 round-trips."""
    per = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", sigma_data=(0.5, 0.05)))
    t = torch.tensor([0, 3, 400, 999])
    x0 = torch.randn(4, 4, 3, 3, 3, dtype=torch.float64)
    eps = torch.randn_like(x0)
    target = per.target(x0, eps, t)
    for c, value in enumerate((0.5, 0.05, 0.5, 0.05)):
        one = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", sigma_data=value))
        torch.testing.assert_close(target[:, c : c + 1], one.target(x0[:, c : c + 1], eps[:, c : c + 1], t))
    x_t = per.add_noise(x0, eps, t)
    for i, k in enumerate(t.tolist()):
        a, s = float(per.alpha[k]), float(per.sigma[k])
        torch.testing.assert_close(per.denoised(target[i : i + 1], x_t[i : i + 1], a, s)[0], x0[i : i + 1])


def test_per_channel_sigma_data_that_does_not_fit_names_the_key():
    per = NoiseProcess(DiffusionSettings(**DDPM, prediction_type="edm", sigma_data=(0.5, 0.05)))
    x0 = torch.zeros(1, 3, 2, 2, 2)
    with pytest.raises(ConfigError, match="diffusion.sigma_data: has 2 values, but the model diffuses 3"):
        per.target(x0, x0, torch.tensor([5]))
    with pytest.raises(ConfigError, match="diffusion.min_snr_gamma"):
        per.x0_loss_scale(torch.tensor([5]))
    with pytest.raises(ConfigError, match="diffusion.sigma_data: must be a finite number > 0"):
        NoiseProcess(dataclasses.replace(per.settings, sigma_data=(0.1, -1.0)))


def test_a_wavelet_run_with_band_sigma_data_and_lognormal_times_trains_and_samples(tmp_path):
    """End to end: the 8 band values reach the checkpoint and the sampler; a 3-value list is refused
    before anything is written."""
    prepared = make_prepared(tmp_path / "prepared", n=6)
    common = [
        f"data.root={prepared}", *TINY_OVERRIDES, "model.representation=wavelet", "diffusion.prediction_type=edm",
        "diffusion.time_sampling=lognormal", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
        "callbacks.quality.every_n_steps=0",
    ]
    bands = "[0.1,0.1,0.1,0.09,0.1,0.09,0.09,0.05]"
    run = tmp_path / "run"
    assert run_train([*common, f"diffusion.sigma_data={bands}", f"hydra.run.dir={run}"]) == 0
    bundle = load_for_sampling(run / "checkpoints" / "last.ckpt")
    assert bundle.diffusion.sigma_data == (0.1, 0.1, 0.1, 0.09, 0.1, 0.09, 0.09, 0.05)
    assert bundle.diffusion.time_sampling == "lognormal"
    out = tmp_path / "samples"
    rc = medsynth_main(
        ["sample", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"out_dir={out}", "num_samples=1", "steps=3",
         "precision=32", "progress=false", "contact_sheet.num_samples=0"]
    )
    assert rc == 0 and len(list(out.glob("sample_*.nii.gz"))) == 1
    bad = tmp_path / "bad"
    assert run_train([*common, "diffusion.sigma_data=[0.1,0.1,0.1]", f"hydra.run.dir={bad}"]) != 0
    assert not (bad / "checkpoints").exists()
