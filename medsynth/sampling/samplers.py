"""Reverse-diffusion samplers: ddpm, ddim, pndm and DPM-Solver++(2M), on the training noise schedule.

Every sampler works on the *discrete* schedule the model was trained with: ``alphas_cumprod``
comes from the MONAI scheduler built from :class:`~medsynth.models.bundle.DiffusionSettings`,
so sampling can never drift from training. Shapes: ``x`` is (B, C, d, h, w), ``t`` an int
timestep in [0, T).

Which code does what, and why:

- ``pndm``: MONAI's ``PNDMScheduler`` (deterministic, its ``set_timesteps``/``step`` agree).
- ``ddim`` and ``ddpm``: the DDIM update (Song et al. 2021, eq. 12) written here, because in
  MONAI 1.6.1 ``DDIMScheduler.step`` takes the previous timestep as ``t - T // n`` while
  ``set_timesteps`` places them at ``linspace(T-1, 0, n)`` (they disagree unless n divides T),
  and both MONAI ``step``s draw one batch-wide noise tensor on the device, which breaks the
  per-sample determinism rule. ``ddpm`` is the same update with eta = 1 (that is exactly the DDPM
  posterior with the "fixed_small" variance, tested against ``DDPMScheduler.step``); with
  ``steps < T`` it is strided ancestral sampling.
- ``dpmpp``: DPM-Solver++(2M) (Lu et al. 2022, Alg. 2, data prediction, lower order at the
  first and last step), written here because the maintained implementation (``diffusers``)
  needs ``huggingface-hub``/``safetensors``/``regex`` that this project does not ship.

Stochastic samplers draw their step noise through ``noise(shape)``, a callable that returns
(B, C, d, h, w) noise made from each sample's own generator (see ``generate.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from medsynth.errors import ConfigError
from medsynth.models.bundle import DiffusionSettings

SAMPLERS = ("ddpm", "ddim", "pndm", "dpmpp")
#: default number of model evaluations per sampler (ddpm: None = every training timestep)
DEFAULT_STEPS = {"ddpm": None, "ddim": 50, "pndm": 50, "dpmpp": 20}

NoiseFn = Callable[[tuple[int, ...]], torch.Tensor]


def monai_scheduler(settings: DiffusionSettings, kind: str = "ddpm"):
    """The MONAI scheduler of the training noise process (``kind``: ddpm | ddim | pndm)."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, PNDMScheduler

    schedule_args = {}
    if settings.schedule != "cosine":
        schedule_args = {"beta_start": settings.beta_start, "beta_end": settings.beta_end}
    common = {"num_train_timesteps": settings.num_train_timesteps, "schedule": settings.schedule}
    if kind == "pndm":
        # the network output is converted to epsilon before it reaches the scheduler
        # PLMS without the Runge-Kutta warm-up: MONAI 1.6.1's PRK warm-up does not converge on an exact
        # Gaussian denoiser (std 0.377 instead of 0.300 at 200 steps, tests/test_sampling_generate.py)
        return PNDMScheduler(**common, skip_prk_steps=True, prediction_type="epsilon", **schedule_args)
    if kind == "ddim":
        return DDIMScheduler(
            **common, clip_sample=settings.clip_sample, prediction_type="epsilon", **schedule_args
        )
    return DDPMScheduler(
        **common, clip_sample=settings.clip_sample, prediction_type="epsilon", **schedule_args
    )


@dataclass
class Prediction:
    """A network output converted to both parameterisations: x0 (clean data) and epsilon (noise)."""

    x0: torch.Tensor
    eps: torch.Tensor


def convert_prediction(
    output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str, clip: bool
) -> Prediction:
    """Turn the network's ``prediction_type`` output at noise level ``alpha_bar`` into (x0, eps).

    With ``clip`` the x0 estimate is clamped to [-1, 1] and eps recomputed from it (as MONAI's
    schedulers do for DDPM/DDIM), which keeps few-step samplers inside the data range.
    """
    a, s = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        x0 = (x - s * output) / a
    elif prediction_type == "sample":
        x0 = output
    elif prediction_type == "v_prediction":
        x0 = a * x - s * output
    else:
        raise ConfigError("diffusion.prediction_type", f"unknown prediction type '{prediction_type}'")
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    eps = (x - a * x0) / s
    return Prediction(x0=x0, eps=eps)


class Sampler:
    """Base: ``timesteps`` to evaluate the network at, then ``step`` once per evaluation."""

    stochastic = False

    def __init__(self, settings: DiffusionSettings, steps: int | None, eta: float = 0.0):
        self.settings = settings
        self.T = settings.num_train_timesteps
        self.eta = float(eta)
        self.alphas_cumprod = monai_scheduler(settings, "ddpm").alphas_cumprod.double()
        self.num_steps = self.T if steps is None else int(steps)
        if not 1 <= self.num_steps <= self.T:
            raise ConfigError(
                "steps", f"must be between 1 and the {self.T} training timesteps, got {self.num_steps}"
            )

    def alpha_bar(self, t: int) -> torch.Tensor:
        """Cumulative signal fraction at timestep t; t < 0 means clean data (1.0)."""
        return self.alphas_cumprod[t] if t >= 0 else torch.tensor(1.0, dtype=torch.float64)

    def timesteps(self) -> list[int]:
        raise NotImplementedError

    def run(
        self, model: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, noise: NoiseFn
    ) -> Iterator[torch.Tensor]:
        """Yield x after each step; ``model(x, t)`` returns the network output (guidance applied)."""
        raise NotImplementedError

    def _predict(self, model, x: torch.Tensor, t: int) -> Prediction:
        out = model(x, t).to(x.dtype)
        alpha_bar = self.alpha_bar(t).to(x.dtype)
        return convert_prediction(out, x, alpha_bar, self.settings.prediction_type, self.settings.clip_sample)


class DDIMSampler(Sampler):
    """DDIM (eta = 0: deterministic ODE-like; eta = 1: DDPM-like ancestral) on linspace(T-1, 0, n)."""

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.eta > 0

    def timesteps(self) -> list[int]:
        # the same grid as MONAI 1.6's DDIMScheduler.set_timesteps
        return torch.linspace(self.T - 1, 0, self.num_steps).round().long().tolist()

    def update(self, pred: Prediction, x: torch.Tensor, t: int, prev: int, noise: NoiseFn) -> torch.Tensor:
        """x_t -> x_prev (prev = -1: clean data), DDIM eq. 12 with sigma_t(eta) of eq. 16."""
        a_t, a_prev = self.alpha_bar(t).to(x.dtype), self.alpha_bar(prev).to(x.dtype)
        sigma = self.eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        x_prev = a_prev.sqrt() * pred.x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * pred.eps
        if self.eta > 0 and prev >= 0:
            x_prev = x_prev + sigma * noise(tuple(x.shape))
        return x_prev

    def run(self, model, x, noise):
        ts = self.timesteps()
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            x = self.update(self._predict(model, x, t), x, t, prev, noise)
            yield x


class DDPMSampler(DDIMSampler):
    """Ancestral DDPM (Ho et al. 2020): the DDIM update with eta = 1, by default over all T steps."""

    stochastic = True

    def __init__(self, settings: DiffusionSettings, steps: int | None, eta: float = 1.0):
        super().__init__(settings, steps, eta=1.0)

    def timesteps(self) -> list[int]:
        if self.num_steps == self.T:
            return list(range(self.T - 1, -1, -1))
        return super().timesteps()


class PNDMSampler(Sampler):
    """Pseudo linear multistep (PLMS, Liu et al. 2022) through MONAI's PNDMScheduler (deterministic)."""

    def _scheduler(self):
        scheduler = monai_scheduler(self.settings, "pndm")
        scheduler.set_timesteps(self.num_steps)
        return scheduler

    def timesteps(self) -> list[int]:
        return self._scheduler().timesteps.tolist()

    def run(self, model, x, noise):
        scheduler = self._scheduler()  # fresh per batch: PNDM keeps a history of past outputs
        for t in scheduler.timesteps.tolist():
            eps = self._predict(model, x, t).eps
            x, _ = scheduler.step(eps, t, x)
            yield x


class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M): second-order multistep in log-SNR, data prediction; good at 10-25 steps.

    Grid: n network evaluations at the training timesteps nearest to a uniform grid in log-SNR
    lambda = log(alpha / sigma) from t = T-1 down to t = 0 (the "logSNR" skip type of the
    DPM-Solver paper; duplicates after rounding are dropped); the final step goes from t = 0 to
    clean data (sigma = 0, where the update is x = x0). On an exact Gaussian denoiser a
    time-uniform grid overshoots the data std by 15% at 20 steps, this grid by 0.3%.
    """

    def timesteps(self) -> list[int]:
        ab = self.alphas_cumprod
        lam = 0.5 * (ab.log() - (1 - ab).log())
        targets = torch.linspace(float(lam[self.T - 1]), float(lam[0]), self.num_steps, dtype=torch.float64)
        nearest = (lam[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()
        return sorted(set(nearest), reverse=True)

    def _alpha_sigma_lambda(self, t: int) -> tuple[float, float, float]:
        a = float(self.alpha_bar(t))
        alpha, sigma = math.sqrt(a), math.sqrt(max(1.0 - a, 0.0))
        lam = math.log(alpha / sigma) if sigma > 0 else math.inf
        return alpha, sigma, lam

    def run(self, model, x, noise):
        ts = self.timesteps()
        x0_prev, h_prev = None, None
        for i, t in enumerate(ts):
            x0 = self._predict(model, x, t).x0
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            _, sigma_t, lam_t = self._alpha_sigma_lambda(t)
            alpha_n, sigma_n, lam_n = self._alpha_sigma_lambda(prev)
            if sigma_n == 0:  # last step: lambda = inf, the update reduces to x = x0
                x = x0
            else:
                h = lam_n - lam_t
                d = x0
                if x0_prev is not None:
                    r = h_prev / h
                    d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
                x = (sigma_n / sigma_t) * x - alpha_n * math.expm1(-h) * d
                h_prev = h
            x0_prev = x0
            yield x


SAMPLER_CLASSES: dict[str, type[Sampler]] = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "pndm": PNDMSampler,
    "dpmpp": DPMSolverPP2MSampler,
}


def build_sampler(
    name: str, settings: DiffusionSettings, steps: int | None = None, eta: float = 0.0
) -> Sampler:
    """A sampler by name (``ddpm`` | ``ddim`` | ``pndm`` | ``dpmpp``); ``steps=None`` uses its default."""
    if name not in SAMPLER_CLASSES:
        raise ConfigError("sampler", f"unknown sampler '{name}' (choose from {', '.join(SAMPLERS)})")
    if eta < 0:
        raise ConfigError("eta", f"must be >= 0, got {eta}")
    if steps is None:
        steps = DEFAULT_STEPS[name]
    return SAMPLER_CLASSES[name](settings, steps, eta)
