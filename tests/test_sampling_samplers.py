"""Samplers on an exact Gaussian oracle, against MONAI's schedulers, and their grids and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medsynth.errors import ConfigError
from medsynth.models.bundle import DiffusionSettings
from medsynth.models.noise import NoiseProcess
from medsynth.sampling.samplers import (
    DEFAULT_STEPS,
    SAMPLER_SPECS,
    SAMPLERS,
    NoiseGrid,
    build_sampler,
    make_denoiser,
    noise_grid,
)

MU, S = 0.2, 0.3  # the oracle's data law: every voxel ~ N(MU, S^2)
CONF = Path(__file__).resolve().parents[1] / "conf"


def settings(process: str = "ddpm", prediction_type: str = "epsilon", clip: bool = False) -> DiffusionSettings:
    return DiffusionSettings(
        num_train_timesteps=1000,
        schedule="scaled_linear_beta",
        beta_start=0.0005,
        beta_end=0.0195,
        prediction_type=prediction_type,
        clip_sample=clip,
        process=process,
    )


def gaussian_oracle(process: NoiseProcess):
    """The exact network for data N(MU, S^2) per voxel, in the process's prediction type."""
    kind = process.settings.prediction_type

    def model(x: torch.Tensor, t: int) -> torch.Tensor:
        a, s = float(process.alpha[t]), float(process.sigma[t])
        x = x.double()
        x0 = MU + a * S**2 / (a * a * S**2 + s * s) * (x - a * MU)
        eps = (x - a * x0) / s
        if kind == "edm":
            c_skip, c_out = process.edm_coefficients(a, s)
            return ((x0 - c_skip * x / a) / c_out).float()
        out = {"epsilon": eps, "sample": x0, "flow": x0 - eps, "v_prediction": a * eps - s * x0}[kind]
        return out.float()

    return model


def run_oracle(diffusion: DiffusionSettings, name: str, steps=None, eta: float = 0.0, grid=None, x=None):
    """The sampler's output for start noise ``x`` (default 8 x 16^3 draws) on the oracle network."""
    sampler = build_sampler(name, diffusion, steps, eta, grid)
    generator = torch.Generator().manual_seed(0)
    if x is None:
        x = torch.randn(8, 1, 16, 16, 16, generator=generator)
    denoise = make_denoiser(gaussian_oracle(NoiseProcess(diffusion)), diffusion, sampler.grid)
    *_, x = sampler.run(denoise, x, lambda shape: torch.randn(shape, generator=generator))
    assert x.dtype == torch.float64
    return x, sampler


def oracle_law(diffusion: DiffusionSettings, name: str, steps=None, grid=None) -> tuple[float, float]:
    """(mean, std) of the sampled law. Deterministic samplers are affine maps of the start noise on a
    Gaussian oracle, x -> A + B x, so the law N(A, B^2) is exact from x = 0 and x = 1; stochastic
    ones are measured on 32768 draws (standard error of the std 0.4%)."""
    if build_sampler(name, diffusion, steps, 0.0, grid).stochastic:
        x, _ = run_oracle(diffusion, name, steps, grid=grid)
        return x.mean().item(), x.std().item()
    x, _ = run_oracle(diffusion, name, steps, grid=grid, x=torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1))
    return x[0].item(), (x[1] - x[0]).item()


CASES = [(name, "ddpm", "epsilon") for name in SAMPLERS] + [
    (name, "rflow", "flow") for name in SAMPLERS if "rflow" in SAMPLER_SPECS[name].processes
]


@pytest.mark.parametrize("name,process,prediction_type", CASES)
def test_every_sampler_reproduces_the_oracle_law_at_its_default_steps(name, process, prediction_type):
    """Mean within 1% of the data std and std within 1%, at the default step count and grid."""
    mean, std = oracle_law(settings(process, prediction_type), name)
    # DDPM-1000 with the fixed-small posterior variance is itself ~1.4% narrow (131072 draws, 2 seeds)
    tolerance = 0.025 if name == "ddpm" else 0.01
    assert abs(mean - MU) < 0.01 * S, mean
    assert abs(std / S - 1) < tolerance, std


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction", "edm"])
def test_prediction_types_give_the_same_trajectory(prediction_type):
    reference = oracle_law(settings("ddpm", "epsilon"), "dpmpp3m")
    other = oracle_law(settings("ddpm", prediction_type), "dpmpp3m")
    assert other == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize("process", ["ddpm", "rflow"])
def test_edm_preconditioning_round_trips_and_is_v_prediction_at_sigma_data_1(process):
    """x0 = c_skip x / alpha + c_out F recovers x0 from the target F at every timestep (rflow t = 0
    included: F = 0 there); with sigma_data = 1 on the VP process F is exactly -v."""
    import dataclasses

    edm = NoiseProcess(dataclasses.replace(settings(process, "edm"), sigma_data=0.5))
    t = torch.tensor([0, 3, 400, 999])
    x0 = torch.randn(4, 2, 3, 3, 3, dtype=torch.float64)
    eps = torch.randn_like(x0)
    x_t, target = edm.add_noise(x0, eps, t), edm.target(x0, eps, t)
    assert torch.isfinite(target).all()
    for i, k in enumerate(t.tolist()):
        a, s = float(edm.alpha[k]), float(edm.sigma[k])
        if s > 0:
            torch.testing.assert_close(edm.denoised(target[i : i + 1], x_t[i : i + 1], a, s)[0], x0[i : i + 1])
    if process == "ddpm":
        unit = NoiseProcess(dataclasses.replace(settings(process, "edm"), sigma_data=1.0))
        v = NoiseProcess(settings(process, "v_prediction"))
        torch.testing.assert_close(unit.target(x0, eps, t), -v.target(x0, eps, t))


def test_pndm_ends_at_clean_data():
    """The last grid point is alpha = 1, sigma = 0 (MONAI's PNDM stops at alpha_bar_0 = 0.9995)."""
    sampler = build_sampler("pndm", settings())
    assert sampler.grid.alpha[-1] == 1.0 and sampler.grid.sigma[-1] == 0.0
    _, std = oracle_law(settings(), "pndm")
    assert abs(std / S - 1) < 0.01


def test_first_order_ddim_converges_to_the_oracle():
    """DDIM's 50-step shortfall (4%) is first-order discretisation error: it halves as the steps double."""
    errors = [abs(oracle_law(settings(), "ddim", steps)[1] / S - 1) for steps in (25, 50, 100)]
    assert errors[1] > 0.03
    assert 1.6 < errors[0] / errors[1] < 2.4 and 1.6 < errors[1] / errors[2] < 2.4


def test_third_order_beats_second_order_at_the_same_steps():
    err2 = abs(oracle_law(settings(), "dpmpp", 20)[1] / S - 1)
    err3 = abs(oracle_law(settings(), "dpmpp3m", 20)[1] / S - 1)
    assert err3 < err2


@pytest.mark.parametrize("name", ["dpmpp", "dpmpp3m"])
def test_dpmpp_sde_form_converges_to_the_oracle_law(name):
    """eta = 1 (k-diffusion's ``_sde`` samplers): fresh noise each step, the law's mean exact and its std
    within 1% at 50 steps (20 steps: ~2.5% wide); DDIM with eta = 1 is 7% narrow at 50 on the same grid."""
    errors = {}
    for steps in (20, 50):
        x, sampler = run_oracle(settings(), name, steps, eta=1.0)
        assert sampler.stochastic
        assert abs(x.mean().item() - MU) < 0.01 * S
        errors[steps] = abs(x.std().item() / S - 1)
    assert errors[50] < 0.01 < errors[20]
    x, _ = run_oracle(settings(), "ddim", 50, eta=1.0)
    assert abs(x.std().item() / S - 1) > 5 * errors[50]


def test_dpmpp_sde_noise_comes_from_the_noise_function():
    """Same start and same step noise: the same volume; other step noise: another one (eta = 0 ignores it)."""
    x = torch.randn(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    a, _ = run_oracle(settings(), "dpmpp3m", 10, eta=1.0, x=x.clone())
    b, _ = run_oracle(settings(), "dpmpp3m", 10, eta=1.0, x=x.clone())
    torch.testing.assert_close(a, b)
    sampler = build_sampler("dpmpp3m", settings(), 10, 1.0)
    denoise = make_denoiser(gaussian_oracle(NoiseProcess(settings())), settings(), sampler.grid)
    gen = torch.Generator().manual_seed(99)
    *_, c = sampler.run(denoise, x.clone(), lambda shape: torch.randn(shape, generator=gen))
    assert not torch.allclose(a, c)
    ode = build_sampler("dpmpp3m", settings(), 10, 0.0)
    *_, d = ode.run(denoise, x.clone(), lambda shape: torch.randn(shape, generator=gen))
    *_, e = ode.run(denoise, x.clone(), lambda shape: torch.zeros(shape))
    torch.testing.assert_close(d, e)


def one_step(sampler, diffusion, i: int, x: torch.Tensor, out: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """x after the sampler's step from grid point i, for a network that always returns ``out``."""
    grid = sampler.grid
    sub = NoiseGrid(grid.timesteps[i : i + 1], grid.alpha[i : i + 2], grid.sigma[i : i + 2])
    denoise = make_denoiser(lambda x_t, t: out, diffusion, sub)
    noise = lambda shape: torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    return next(sampler.spec.function(denoise, x.double(), sub, noise)).float()


def test_ddpm_step_is_monai_ddpm_scheduler_step():
    """Ancestral DDPM (DDIM update, eta = 1, every timestep) is MONAI's DDPMScheduler.step (fixed-small)."""
    from monai.networks.schedulers import DDPMScheduler

    diffusion = settings(clip=True)
    monai = DDPMScheduler(
        num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195
    )
    sampler = build_sampler("ddpm", diffusion)
    x, out = torch.randn(2, 1, 4, 4, 4), torch.randn(2, 1, 4, 4, 4)
    for i in (0, 499, 998):
        t = sampler.grid.timesteps[i]
        expected, _ = monai.step(out, t, x, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(one_step(sampler, diffusion, i, x, out), expected, rtol=1e-4, atol=1e-5)


def test_euler_on_rflow_is_monai_rflow_scheduler_step():
    from monai.networks.schedulers import RFlowScheduler

    diffusion = settings("rflow", "flow")
    monai = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=True)
    monai.set_timesteps(10)
    sampler = build_sampler("euler", diffusion, steps=10, grid="uniform")
    x, out = torch.randn(2, 1, 4, 4, 4), 0.3 * torch.randn(2, 1, 4, 4, 4)
    ts = sampler.grid.timesteps
    for i in range(len(ts) - 1):
        expected, _ = monai.step(out, ts[i], x, ts[i + 1])
        torch.testing.assert_close(one_step(sampler, diffusion, i, x, out), expected, rtol=1e-5, atol=1e-5)


def test_grids_are_descending_float64_and_end_at_clean_data():
    for process in ("ddpm", "rflow"):
        noise = NoiseProcess(settings(process, "flow" if process == "rflow" else "epsilon"))
        for kind in ("uniform", "logsnr", "karras"):
            grid = noise_grid(noise, 10, kind)
            assert list(grid.timesteps) == sorted(set(grid.timesteps), reverse=True)
            assert grid.timesteps[0] == 999 and min(grid.timesteps) >= (1 if process == "rflow" else 0)
            assert (grid.alpha[-1], grid.sigma[-1]) == (1.0, 0.0) and len(grid.alpha) == len(grid) + 1
    assert noise_grid(NoiseProcess(settings()), 1000, "uniform").timesteps == tuple(range(999, -1, -1))
    assert noise_grid(NoiseProcess(settings()), 50, "uniform").timesteps[-1] == 19


def test_bad_input_names_the_key():
    rflow = settings("rflow", "flow")
    with pytest.raises(ConfigError, match="sampler.*DDPM-family checkpoints only.*diffusion.process=rflow"):
        build_sampler("ddpm", rflow)
    with pytest.raises(ConfigError, match="grid.*unknown grid 'cosine'"):
        build_sampler("dpmpp3m", rflow, grid="cosine")
    with pytest.raises(ConfigError, match="steps"):
        build_sampler("dpmpp", settings(), steps=5000)
    with pytest.raises(ConfigError, match="sampler.*unknown sampler"):
        build_sampler("unipc", settings())
    with pytest.raises(ConfigError, match="diffusion.process"):
        NoiseProcess(settings("edm"))


def test_heun_counts_its_network_evaluations():
    sampler = build_sampler("heun", settings("rflow", "flow"), steps=10)
    calls = []
    diffusion = settings("rflow", "flow")
    denoise = make_denoiser(lambda x, t: calls.append(t) or torch.zeros_like(x), diffusion, sampler.grid)
    list(sampler.run(denoise, torch.randn(1, 1, 2, 2, 2), noise=None))
    assert len(calls) == sampler.network_evaluations == 19


def test_sampler_configs_match_the_code_defaults():
    for name in SAMPLERS:
        conf = yaml.safe_load((CONF / "sampler" / f"{name}.yaml").read_text())
        assert conf["name"] == name and conf["steps"] == DEFAULT_STEPS[name]
        assert conf["grid"] == ("uniform" if name == "ddpm" else "auto")
