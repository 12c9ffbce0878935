"""The training noise process, shared by training and every sampler: x_t = alpha_t x0 + sigma_t eps.

One object answers every question about the forward process at the integer training timesteps
t in [0, T): the MONAI scheduler that adds noise, the float64 ``alpha``/``sigma`` tables the
samplers build their grids from, the training target of each prediction type, the time sampling,
and the conversion of a network output back to (x0, eps).

Notation (code <-> papers):

==================  ==========================================================================
``process``         ``ddpm``: variance preserving, alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t)
                    (MONAI ``DDPMScheduler``: linear_beta | scaled_linear_beta | cosine);
                    ``rflow``: rectified flow, alpha_t = 1 - t/T, sigma_t = t/T (MONAI ``RFlowScheduler``;
                    t = 0 is clean data)
``alpha, sigma``    signal and noise scale of x_t (float64, shape (T,))
``lambda``          log-SNR log(alpha / sigma) (DPM-Solver), ``sigma / alpha`` = EDM's sigma
``epsilon``         network predicts eps
``sample``          network predicts x0
``v_prediction``    network predicts v = alpha eps - sigma x0 (Salimans & Ho 2022)
``flow``            network predicts x0 - eps (MONAI RFlowScheduler / MAISI velocity)
``edm``             network predicts F with x0 = c_skip x~ + c_out F (Karras et al. 2022, Table 1):
                    x~ = x_t / alpha, s = sigma / alpha, ``sigma_data`` = s_d,
                    c_skip = s_d^2 / (s^2 + s_d^2), c_out = s s_d / sqrt(s^2 + s_d^2); the input
                    is x_t itself (VP and rflow keep it bounded, so EDM's c_in is left out).
                    s_d = 1 is v-prediction (F = -v); smaller s_d leans towards x0 prediction at
                    mid noise while low noise stays a near-identity skip (sharp fine texture).
                    s_d may be one value per representation channel (c_skip is the Wiener weight
                    of a Gaussian band of SD s_d: wavelet detail bands want their own)
``time_sampling``   law of the training t: ``uniform``, ``logit-normal`` on t/T, ``lognormal`` on
                    sigma/alpha (EDM's P_mean, P_std), ``logsnr``: uniform in ln(sigma/alpha) over
                    the trained range
==================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medsynth.errors import ConfigError
from medsynth.models.bundle import DiffusionSettings

PROCESSES = ("ddpm", "rflow")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow", "edm")
SCHEDULES = ("linear_beta", "scaled_linear_beta", "cosine")
TIME_SAMPLING = ("uniform", "logit-normal", "lognormal", "logsnr")


def check_sigma_data(value: object) -> float | tuple[float, ...]:
    """``diffusion.sigma_data``: a float, or a tuple of floats (one per representation channel).

    Raises :class:`ConfigError` unless it is a finite number > 0 or a non-empty list of them.
    """
    listed = isinstance(value, Sequence) and not isinstance(value, str)  # list, tuple, OmegaConf ListConfig
    values = list(value) if listed else [value]
    if not values or not all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < float(v) < float("inf") for v in values
    ):
        raise ConfigError("diffusion.sigma_data", f"must be a finite number > 0 or a list of them, got {value!r}")
    return tuple(float(v) for v in values) if listed else float(values[0])


def check_time_sampling(value: object) -> str:
    """``diffusion.time_sampling`` as given; raises :class:`ConfigError` unless it is one of :data:`TIME_SAMPLING`."""
    if value not in TIME_SAMPLING:
        raise ConfigError("diffusion.time_sampling", f"unknown '{value}' (choose from {', '.join(TIME_SAMPLING)})")
    return str(value)


class NoiseProcess:
    """The forward process of a :class:`DiffusionSettings` (see the module notation table).

    Attributes:
        scheduler: the MONAI scheduler (``add_noise``); the only scheduler medsynth builds.
        alpha, sigma: (T,) float64 signal / noise scales at the training timesteps.
        sigma_data: EDM's s_d, checked: a float, or a tuple with one value per representation channel.
    """

    def __init__(self, settings: DiffusionSettings):
        self.settings = settings
        self.kind = str(settings.process)
        self.T = int(settings.num_train_timesteps)
        if self.kind not in PROCESSES:
            raise ConfigError("diffusion.process", f"unknown '{self.kind}' (choose from {', '.join(PROCESSES)})")
        if settings.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                "diffusion.prediction_type",
                f"unknown '{settings.prediction_type}' (choose from {', '.join(PREDICTION_TYPES)})",
            )
        self.sigma_data = check_sigma_data(settings.sigma_data)
        check_time_sampling(settings.time_sampling)
        if settings.time_sampling == "lognormal" and not 0 < float(settings.lognormal_std) < float("inf"):
            raise ConfigError("diffusion.lognormal_std", f"must be a finite number > 0, got {settings.lognormal_std!r}")
        if self.kind == "rflow":
            from monai.networks.schedulers import RFlowScheduler

            self.scheduler = RFlowScheduler(num_train_timesteps=self.T, use_discrete_timesteps=True)
            self.sigma = torch.arange(self.T, dtype=torch.float64) / self.T
            self.alpha = 1.0 - self.sigma
        else:
            from monai.networks.schedulers import DDPMScheduler

            if settings.schedule not in SCHEDULES:
                raise ConfigError(
                    "diffusion.schedule", f"unknown '{settings.schedule}' (choose from {', '.join(SCHEDULES)})"
                )
            betas = {}
            if settings.schedule != "cosine":
                betas = {"beta_start": settings.beta_start, "beta_end": settings.beta_end}
            self.scheduler = DDPMScheduler(
                num_train_timesteps=self.T, schedule=settings.schedule, clip_sample=False, **betas
            )
            alpha_bar = self.scheduler.alphas_cumprod.double()
            self.alpha, self.sigma = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
        log_s = (self.sigma / self.alpha).log()  # ascending in t; rflow t = 0: -inf
        self._log_s_midpoints = 0.5 * (log_s[1:] + log_s[:-1])  # lognormal times snap to the nearest t
        finite = log_s[torch.isfinite(log_s)]
        self._log_s_range = (float(finite.min()), float(finite.max()))  # ``logsnr`` draws in here

    # ------------------------------------------------------------------ training
    def sample_timesteps(self, batch_size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """(B,) long training timesteps in [0, T) drawn from ``generator``, by ``diffusion.time_sampling``:

        - ``uniform``: every timestep alike (DDPM's usual choice);
        - ``logit-normal``: t / T = sigmoid(``logit_loc`` + ``logit_scale`` z), as in SD3/MAISI;
        - ``lognormal``: EDM's training noise law, ln(sigma / alpha) ~ N(``lognormal_mean``,
          ``lognormal_std``^2), snapped to the training timestep nearest in ln(sigma / alpha) (rflow's
          clean t = 0 is never drawn);
        - ``logsnr``: ln(sigma / alpha) uniform between the least and the most noisy trained timestep,
          snapped the same way: on DDPM's scaled-linear schedule (T = 1000) about 20% of draws fall
          at t < 20 (s < 0.11), against 2% for ``uniform``, while 25% stay at s > 7.

        Drawn here rather than by MONAI's ``RFlowScheduler.sample_timesteps``, which takes no generator:
        an exact resume needs every draw from the seeded generator.
        """
        kind = self.settings.time_sampling
        if kind == "uniform":
            return torch.randint(0, self.T, (batch_size,), generator=generator, device=device)
        if kind == "logsnr":
            low, high = self._log_s_range
            u = torch.rand(batch_size, generator=generator, device=device).double().cpu()
            return self._nearest_timestep(low + u * (high - low), device)
        z = torch.randn(batch_size, generator=generator, device=device)
        if kind == "logit-normal":
            u = torch.sigmoid(self.settings.logit_loc + self.settings.logit_scale * z)
            return (u * self.T).long().clamp_(0, self.T - 1)
        log_s = (self.settings.lognormal_mean + self.settings.lognormal_std * z).double().cpu()
        return self._nearest_timestep(log_s, device)

    def _nearest_timestep(self, log_s: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B,) long: the training timestep nearest to each ln(sigma / alpha) in ``log_s`` (float64, CPU)."""
        return torch.searchsorted(self._log_s_midpoints, log_s).clamp_(0, self.T - 1).to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t (same shape as x0) through the MONAI scheduler."""
        return self.scheduler.add_noise(original_samples=x0, noise=noise, timesteps=timesteps)

    def scales(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) as (B, 1, ..., 1) tensors of ``like``'s dtype and device."""
        view = (-1,) + (1,) * (like.ndim - 1)
        index = timesteps.long().cpu()
        alpha = self.alpha[index].to(like.device, like.dtype).view(view)
        sigma = self.sigma[index].to(like.device, like.dtype).view(view)
        return alpha, sigma

    def target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the network must output at x_t (same shape as x0), by ``prediction_type``."""
        kind = self.settings.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return x0
        if kind == "flow":
            return x0 - noise
        alpha, sigma = self.scales(timesteps, x0)
        if kind == "edm":
            c_skip, c_out = self.edm_coefficients(alpha, sigma, x0)  # rflow t = 0: c_out = 0 and F = 0
            return (x0 - c_skip * (alpha * x0 + sigma * noise) / alpha) / c_out.clamp_min(1e-12)
        return alpha * noise - sigma * x0

    def edm_coefficients(self, alpha, sigma, like: torch.Tensor | None = None):
        """EDM's (c_skip, c_out) at (alpha, sigma) (floats or tensors): x0 = c_skip x / alpha + c_out F.

        With a per-channel ``sigma_data`` the coefficients are (1, C, 1, ...) tensors (times alpha's
        shape) for ``like`` (B, C, ...), on its device (see :meth:`sigma_data_for`).
        """
        s = sigma / alpha
        sd = self.sigma_data_for(like)
        return sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2) ** 0.5

    def sigma_data_for(self, like: torch.Tensor | None) -> float | torch.Tensor:
        """``sigma_data`` for the channels of ``like`` (B, C, ...): a float, or a (1, C, 1, ...) tensor.

        A list of L values is one per representation channel (wavelet: the 8 bands, low band first)
        and repeats for each volume channel (a paired model's label channels), as ``clip_bounds``
        does; C must be a multiple of L.
        """
        if isinstance(self.sigma_data, float):
            return self.sigma_data
        if like is None:
            raise ValueError("a per-channel sigma_data needs the tensor whose channels it scales")
        values = self.check_channels(int(like.shape[1]))
        dtype = like.dtype if like.is_floating_point() else torch.float64
        sd = torch.tensor(values, dtype=dtype, device=like.device)
        return sd.view(1, len(values), *([1] * (like.ndim - 2)))

    def check_channels(self, channels: int) -> tuple[float, ...]:
        """A per-channel ``sigma_data`` spread over ``channels`` diffused channels (the L values repeated);
        raises :class:`ConfigError` naming ``diffusion.sigma_data`` unless ``channels`` is a multiple of L."""
        values = (self.sigma_data,) if isinstance(self.sigma_data, float) else self.sigma_data
        if channels % len(values):
            raise ConfigError(
                "diffusion.sigma_data",
                f"has {len(values)} values, but the model diffuses {channels} channels (give one value per "
                "representation channel: 1 for pixel, 8 for wavelet)",
            )
        return values * (channels // len(values))

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        """SNR(t) = alpha_t^2 / sigma_t^2, (B,) float32 (clean rflow t = 0: large, not inf)."""
        index = timesteps.long().cpu()
        ratio = self.alpha[index] ** 2 / (self.sigma[index] ** 2).clamp_min(1e-12)
        return ratio.float().to(timesteps.device)

    def x0_loss_scale(self, timesteps: torch.Tensor) -> torch.Tensor:
        """(B,) float32 factor c with |x0_hat - x0|^2 = c |out_hat - out|^2 for ``prediction_type``.

        Turns a min-SNR weight written for x0 into one for the network's own target (epsilon:
        sigma^2/alpha^2 = 1/SNR; v: sigma^2 (VP); flow: sigma^2 / (alpha + sigma)^2; edm: c_out^2;
        sample: 1). Without min-SNR, edm's loss is EDM's own weighting (unit weight on F).
        """
        index = timesteps.long().cpu()
        alpha, sigma = self.alpha[index], self.sigma[index]
        kind = self.settings.prediction_type
        if kind == "epsilon":
            scale = sigma**2 / (alpha**2).clamp_min(1e-12)
        elif kind == "v_prediction":
            scale = sigma**2 / (alpha**2 + sigma**2) ** 2
        elif kind == "flow":
            scale = sigma**2 / (alpha + sigma) ** 2
        elif kind == "edm":
            if not isinstance(self.sigma_data, float):
                raise ConfigError("diffusion.min_snr_gamma", "is not supported with a per-channel sigma_data")
            scale = self.edm_coefficients(alpha, sigma)[1] ** 2
        else:
            scale = torch.ones_like(alpha)
        return scale.float().to(timesteps.device)

    # ------------------------------------------------------------------ sampling
    def denoised(
        self, output: torch.Tensor, x: torch.Tensor, alpha: float, sigma: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) from the network ``output`` at x = alpha x0 + sigma eps (any alpha, sigma > 0)."""
        kind = self.settings.prediction_type
        if kind == "epsilon":
            eps = output
            x0 = (x - sigma * eps) / alpha
        elif kind == "sample":
            x0 = output
            eps = (x - alpha * x0) / sigma
        elif kind == "flow":
            x0 = (x + sigma * output) / (alpha + sigma)
            eps = x0 - output
        elif kind == "edm":
            c_skip, c_out = self.edm_coefficients(alpha, sigma, x)
            x0 = c_skip * x / alpha + c_out * output
            eps = (x - alpha * x0) / sigma
        else:
            norm = alpha**2 + sigma**2
            x0 = (alpha * x - sigma * output) / norm
            eps = (sigma * x + alpha * output) / norm
        return x0, eps
