"""Samplers as plain functions over one float64 noise grid (EDM-style: Karras et al. 2022, Alg. 1-2).

Every sampler walks the same kind of object, a :class:`NoiseGrid`: n network-evaluation timesteps
t_0 > ... > t_{n-1} of the training process and n + 1 points (alpha_i, sigma_i) of
x = alpha x0 + sigma eps, the last one clean data (1, 0). The grid comes from the checkpoint's
:class:`~medsynth.models.noise.NoiseProcess` (DDPM or rectified flow) and a grid type:

============  ===============================================================================
``uniform``   evenly spaced training timesteps (MONAI's ``set_timesteps``; every timestep when n = T)
``logsnr``    evenly spaced in log-SNR lambda = log(alpha / sigma) (DPM-Solver's "logSNR")
``karras``    EDM's rho-spaced sigma/alpha (rho = 7)
``auto``      ``logsnr`` for DDPM schedules, ``uniform`` for rflow (:data:`AUTO_GRID`)
============  ===============================================================================

A sampler gets ``denoise(x, i) -> (x0, eps)``, the network's estimate at grid point i (float64,
x0-clipping applied), and updates x in float64. Notation: a, s = alpha_i, sigma_i; a1, s1 = the
next point; lambda = log(a / s); h = lambda_1 - lambda. Shapes: x is (B, C, d, h, w).

- ``ddim`` (Song et al. 2021, eq. 12/16): x1 = a1 x0 + sqrt(s1^2 - c^2) eps + c z, with c the
  eta-scaled posterior std; eta = 0 is Euler on the probability-flow ODE (``euler``; for rflow it
  is exactly MONAI ``RFlowScheduler.step``), eta = 1 with every timestep is ``ddpm``.
- ``heun``: EDM's 2nd-order Heun on dx~/dsigma~ = eps (x~ = x / alpha, sigma~ = sigma / alpha);
  2n - 1 evaluations, Euler for the last step.
- ``pndm`` (PLMS, Liu et al. 2022): Adams-Bashforth on eps (orders 1-4) through the DDIM transfer.
- ``dpmpp`` (DPM-Solver++(2M), Lu et al. 2022, Alg. 2) and ``dpmpp3m`` (its 3rd-order multistep,
  as in k-diffusion's ``sample_dpmpp_3m_sde``), in data prediction; eta = 0 solves the ODE, eta > 0
  the SDE (k-diffusion's ``_sde`` samplers: fresh noise each step, e^(-eta h) of the old kept).

Written here rather than taken from MONAI because MONAI 1.6's schedulers stop at alpha_bar_0
(PNDM ends with ~2% noise left), disagree on their own grids (``DDIMScheduler``: previous
timestep t - T // n vs ``linspace``) and draw one batch-wide noise tensor (breaks per-sample
determinism); the maintained multistep solvers live in ``diffusers`` (not shipped here).
Stochastic samplers take their step noise from ``noise(shape)``, which returns (B, C, d, h, w)
noise drawn from each sample's own generator (see ``generate.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import torch

from medsynth.errors import ConfigError
from medsynth.models.bundle import DiffusionSettings
from medsynth.models.noise import NoiseProcess

NoiseFn = Callable[[tuple[int, ...]], torch.Tensor]
#: denoise(x, i) -> (x0, eps) at grid point i, float64 like x
DenoiseFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]

GRIDS = ("uniform", "logsnr", "karras")
#: ``grid: auto``: the grid on which the samplers meet the Gaussian oracle at their default steps
#: (tests/test_sampling_samplers.py): log-SNR for DDPM schedules, time-uniform (MONAI's) for rflow
AUTO_GRID = {"ddpm": "logsnr", "rflow": "uniform"}


@dataclass(frozen=True)
class NoiseGrid:
    """Timesteps (n, descending) where the network is evaluated, and n + 1 (alpha, sigma) pairs.

    ``alpha[i], sigma[i]`` belong to ``timesteps[i]``; ``alpha[n] = 1, sigma[n] = 0`` is clean data.
    """

    timesteps: tuple[int, ...]
    alpha: tuple[float, ...]
    sigma: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.timesteps)


def noise_grid(process: NoiseProcess, steps: int, kind: str = "uniform", rho: float = 7.0) -> NoiseGrid:
    """The n = ``steps`` point grid of type ``kind`` on ``process``'s training timesteps.

    Timesteps span T - 1 down to the least-noisy trained one (DDPM: 0; rflow: 1, as t = 0 is
    clean); non-uniform grids snap to the nearest trained timestep, moving to the next free one
    where the spacing is finer than one timestep, so every grid has exactly ``steps`` points.
    """
    if kind not in GRIDS:
        raise ConfigError("grid", f"unknown grid '{kind}' (choose from {', '.join(GRIDS)})")
    T = process.T
    t_clean = 0 if process.kind == "rflow" else -1
    t_hi, t_lo = T - 1, t_clean + 1
    available = t_hi - t_lo + 1
    if not 1 <= int(steps) <= available:
        raise ConfigError("steps", f"must be between 1 and the {available} trained timesteps, got {steps}")
    n = int(steps)
    alpha, sigma = process.alpha, process.sigma
    if kind == "uniform":
        stride = (t_hi - t_clean) / n
        chosen = [round(t_hi - i * stride) for i in range(n)]
    else:
        ts = torch.arange(t_lo, t_hi + 1)
        if kind == "logsnr":
            coordinate = (alpha[ts] / sigma[ts]).log()
            targets = torch.linspace(float(coordinate[-1]), float(coordinate[0]), n, dtype=torch.float64)
        else:
            coordinate = (sigma[ts] / alpha[ts]) ** (1.0 / rho)
            targets = torch.linspace(float(coordinate[-1]), float(coordinate[0]), n, dtype=torch.float64)
        index = sorted((coordinate[None, :] - targets[:, None]).abs().argmin(dim=1).tolist())
        for k in range(1, n):  # where the spacing is finer than one timestep, take the next free ones
            index[k] = max(index[k], index[k - 1] + 1)
        index[-1] = min(index[-1], available - 1)
        for k in range(n - 2, -1, -1):
            index[k] = min(index[k], index[k + 1] - 1)
        chosen = [int(ts[j]) for j in reversed(index)]
    return NoiseGrid(
        timesteps=tuple(chosen),
        alpha=tuple(float(alpha[t]) for t in chosen) + (1.0,),
        sigma=tuple(float(sigma[t]) for t in chosen) + (0.0,),
    )


# ---------------------------------------------------------------------------------------- samplers
def sample_ddim(
    denoise: DenoiseFn, x: torch.Tensor, grid: NoiseGrid, noise: NoiseFn, eta: float = 0.0
) -> Iterator[torch.Tensor]:
    """DDIM (eta = 0: Euler on the probability-flow ODE; eta = 1: ancestral DDPM posterior)."""
    for i in range(len(grid)):
        x0, eps = denoise(x, i)
        a, s, a1, s1 = grid.alpha[i], grid.sigma[i], grid.alpha[i + 1], grid.sigma[i + 1]
        c = 0.0
        if eta > 0 and s1 > 0:  # std of q(x1 | x, x0) scaled by eta
            c = eta * (s1 / s) * math.sqrt(max(s**2 - (a / a1) ** 2 * s1**2, 0.0))
        x = a1 * x0 + math.sqrt(max(s1**2 - c**2, 0.0)) * eps
        if c > 0:
            x = x + c * noise(tuple(x.shape)).to(x.dtype)
        yield x


def sample_heun(denoise: DenoiseFn, x: torch.Tensor, grid: NoiseGrid, noise: NoiseFn) -> Iterator[torch.Tensor]:
    """EDM Heun (2nd order) on x~ = x / alpha over sigma~ = sigma / alpha; the last step is Euler."""
    for i in range(len(grid)):
        x0, eps = denoise(x, i)
        a, s, a1, s1 = grid.alpha[i], grid.sigma[i], grid.alpha[i + 1], grid.sigma[i + 1]
        x_euler = a1 * x0 + s1 * eps
        if s1 == 0:
            x = x_euler
        else:
            _, eps_next = denoise(x_euler, i + 1)
            x = a1 * (x / a + (s1 / a1 - s / a) * 0.5 * (eps + eps_next))
        yield x


#: Adams-Bashforth coefficients, newest eps first (PLMS uses up to order 4)
ADAMS_BASHFORTH = ((1.0,), (1.5, -0.5), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def sample_pndm(denoise: DenoiseFn, x: torch.Tensor, grid: NoiseGrid, noise: NoiseFn) -> Iterator[torch.Tensor]:
    """PLMS: an Adams-Bashforth combination of past eps, then the DDIM transfer (to clean data at the end)."""
    history: list[torch.Tensor] = []
    for i in range(len(grid)):
        _, eps = denoise(x, i)
        history = [eps, *history][:4]
        e = sum(c * h for c, h in zip(ADAMS_BASHFORTH[len(history) - 1], history, strict=True))
        a, s, a1, s1 = grid.alpha[i], grid.sigma[i], grid.alpha[i + 1], grid.sigma[i + 1]
        x = a1 * (x - s * e) / a + s1 * e
        yield x


def sample_dpmpp(
    denoise: DenoiseFn, x: torch.Tensor, grid: NoiseGrid, noise: NoiseFn, order: int = 2, eta: float = 0.0
) -> Iterator[torch.Tensor]:
    """DPM-Solver++ multistep (data prediction), ``order`` 2 (2M) or 3 (3M); lower order while warming up.

    ``eta`` > 0 is the SDE form (k-diffusion's ``sample_dpmpp_2m_sde`` / ``_3m_sde``): a step keeps
    e^(-eta h) of x's noise and adds fresh noise of std s1 sqrt(1 - e^(-2 eta h)), so the marginal
    std stays s1; the data terms use h_eta = (1 + eta) h. eta = 0 is the ODE solver.
    """
    past: list[tuple[torch.Tensor, float]] = []  # (x0, h of the step that followed it), newest first
    for i in range(len(grid)):
        x0, _ = denoise(x, i)
        a, s, a1, s1 = grid.alpha[i], grid.sigma[i], grid.alpha[i + 1], grid.sigma[i + 1]
        if s1 == 0:  # lambda_1 = inf: the update reduces to x = x0
            yield x0
            return
        h = math.log(a1 / s1) - math.log(a / s)
        h_eta = (1.0 + eta) * h
        keep = (s1 / s) * math.exp(-eta * h)  # the share of x carried over
        # DPM-Solver's lower_order_final: below 15 steps the second-to-last step is 2nd order (stability)
        step_order = 2 if (order == 3 and len(grid) < 15 and i == len(grid) - 2) else order
        if step_order == 2 or not past:
            d = x0
            if past:
                r = past[0][1] / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * past[0][0]
            x = keep * x - a1 * math.expm1(-h_eta) * d
        else:
            x = keep * x - a1 * math.expm1(-h_eta) * x0
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            r0 = past[0][1] / h
            d1_0 = (x0 - past[0][0]) / r0
            if len(past) == 1:
                x = x + a1 * phi_2 * d1_0
            else:
                r1 = past[1][1] / h
                d1_1 = (past[0][0] - past[1][0]) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + a1 * (phi_2 * d1 - phi_3 * d2)
        if eta > 0:
            x = x + s1 * math.sqrt(-math.expm1(-2.0 * eta * h)) * noise(tuple(x.shape)).to(x.dtype)
        past = [(x0, h), *past][:2]
        yield x


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, defaults and the processes it is defined for."""

    function: Callable[..., Iterator[torch.Tensor]]
    default_steps: int | None  # None: every trained timestep
    default_grid: str = "auto"
    processes: tuple[str, ...] = ("ddpm", "rflow")
    evals_per_step: int = 1  # heun: 2 (minus one for the last step)
    uses_eta: bool = False


SAMPLER_SPECS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(partial(sample_ddim, eta=1.0), None, "uniform", processes=("ddpm",)),
    "ddim": SamplerSpec(sample_ddim, 300, uses_eta=True),
    "euler": SamplerSpec(partial(sample_ddim, eta=0.0), 300),
    "heun": SamplerSpec(sample_heun, 35, evals_per_step=2),
    "pndm": SamplerSpec(sample_pndm, 50),
    "dpmpp": SamplerSpec(partial(sample_dpmpp, order=2), 20, uses_eta=True),
    "dpmpp3m": SamplerSpec(partial(sample_dpmpp, order=3), 20, uses_eta=True),
}
SAMPLERS = tuple(SAMPLER_SPECS)
#: default number of grid steps per sampler (ddpm: None = every training timestep)
DEFAULT_STEPS = {name: spec.default_steps for name, spec in SAMPLER_SPECS.items()}


@dataclass(frozen=True)
class Sampler:
    """A sampler bound to its grid: ``run(denoise, x, noise)`` yields x after every step."""

    name: str
    grid: NoiseGrid
    eta: float
    spec: SamplerSpec
    grid_kind: str  # uniform | logsnr | karras (``auto`` resolved)

    @property
    def num_steps(self) -> int:
        return len(self.grid)

    @property
    def stochastic(self) -> bool:
        return self.name == "ddpm" or (self.spec.uses_eta and self.eta > 0)

    @property
    def network_evaluations(self) -> int:
        """Network calls per volume (without guidance doubling): heun 2n - 1, the others n."""
        return self.spec.evals_per_step * self.num_steps - (self.spec.evals_per_step - 1)

    def timesteps(self) -> list[int]:
        return list(self.grid.timesteps)

    def run(self, denoise: DenoiseFn, x: torch.Tensor, noise: NoiseFn) -> Iterator[torch.Tensor]:
        if self.spec.uses_eta:
            return self.spec.function(denoise, x.double(), self.grid, noise, eta=self.eta)
        return self.spec.function(denoise, x.double(), self.grid, noise)


def build_sampler(
    name: str,
    settings: DiffusionSettings,
    steps: int | None = None,
    eta: float = 0.0,
    grid: str | None = None,
    rho: float = 7.0,
) -> Sampler:
    """A sampler by name on the checkpoint's noise process; ``steps``/``grid`` None: its defaults.

    Raises :class:`ConfigError` naming ``sampler`` (unknown, or not defined for the checkpoint's
    process), ``steps``, ``eta`` or ``grid``.
    """
    spec = SAMPLER_SPECS.get(name)
    if spec is None:
        raise ConfigError("sampler", f"unknown sampler '{name}' (choose from {', '.join(SAMPLERS)})")
    process = NoiseProcess(settings)
    if process.kind not in spec.processes:
        usable = [n for n, s in SAMPLER_SPECS.items() if process.kind in s.processes]
        raise ConfigError(
            "sampler",
            f"'{name}' samples DDPM-family checkpoints only; this checkpoint was trained with "
            f"diffusion.process={process.kind} (use {', '.join(usable)})",
        )
    if eta < 0:
        raise ConfigError("eta", f"must be >= 0, got {eta}")
    if steps is None:
        steps = spec.default_steps if spec.default_steps is not None else process.T - (process.kind == "rflow")
    grid_kind = spec.default_grid if grid in (None, "auto") else str(grid)
    if grid_kind == "auto":
        grid_kind = AUTO_GRID[process.kind]
    return Sampler(
        name=name,
        grid=noise_grid(process, int(steps), grid_kind, rho),
        eta=float(eta),
        spec=spec,
        grid_kind=grid_kind,
    )


def make_denoiser(
    model: Callable[[torch.Tensor, int], torch.Tensor],
    settings: DiffusionSettings,
    grid: NoiseGrid,
    clip_bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DenoiseFn:
    """``denoise(x, i)``: the network ``model(x float32, t)`` at grid point i, as float64 (x0, eps).

    With ``settings.clip_sample`` x0 is clamped to ``clip_bounds`` = (low, high), each (C,) per
    channel of x (the representation's :meth:`clip_bounds`; None: [-1, 1] for every channel), and eps
    recomputed from it (as MONAI's DDPM/DDIM schedulers do), which keeps few-step samplers inside
    the data range.
    """
    process = NoiseProcess(settings)

    def denoise(x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = grid.alpha[i], grid.sigma[i]
        out = model(x.float(), grid.timesteps[i]).double()
        x0, eps = process.denoised(out, x, a, s)
        if settings.clip_sample:
            if clip_bounds is None:
                x0 = x0.clamp(-1.0, 1.0)
            else:
                shape = (1, -1) + (1,) * (x0.ndim - 2)
                low, high = (b.to(x0.device, x0.dtype).view(shape) for b in clip_bounds)
                x0 = x0.clamp(low, high)
            eps = (x - a * x0) / s
        return x0, eps

    return denoise
