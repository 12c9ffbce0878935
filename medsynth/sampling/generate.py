"""Generate volumes from a :class:`~medsynth.models.bundle.SamplingBundle`: the sampling core.

Determinism: sample i uses its own ``torch.Generator`` seeded with ``seeds[i]``, on the CPU; it
draws the initial noise and then, in order, every stochastic step's noise, which is moved to the
device afterwards. Nothing else is random, so a volume is a function of (``seeds[i]``, settings)
alone, whatever ``batch_size``, device count or position in the run. :func:`sample_seed` derives
``seeds[i]`` from a run's base seed and the sample index.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medsynth.errors import ConfigError
from medsynth.models.bundle import SamplingBundle
from medsynth.models.paired import mask_condition
from medsynth.models.precision import resolve_device, resolve_precision
from medsynth.sampling.samplers import build_sampler, make_denoiser

#: sample ``precision`` values (aliases of Lightning's names, see ``medsynth.models.precision``)
PRECISIONS = ("auto", "32", "bf16", "16")
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "32-true": None}


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` in a run with base ``seed`` (63-bit, via numpy SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def sampling_precision(precision: str, device: torch.device) -> str:
    """``precision`` as a Lightning name the sampler can run on ``device`` (``auto``: bf16 where native)."""
    resolved = resolve_precision(str(precision), device)
    if resolved not in AUTOCAST_DTYPES:
        raise ConfigError(
            "precision", f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})"
        )
    if resolved == "16-mixed" and device.type != "cuda":
        raise ConfigError("precision", "fp16 autocast needs a CUDA device; use bf16 or 32 on the CPU")
    return resolved


def autocast(device: torch.device, precision: str):
    """Autocast context for the network forward pass (the sampler update itself runs in float64)."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class GeneratedBatch:
    """One finished batch: sample positions in ``seeds``, (b, 1, D, H, W) float32 CPU volumes, seconds."""

    positions: list[int]
    volumes: torch.Tensor
    seconds: float


def validate_conditions(
    bundle: SamplingBundle,
    n: int,
    guidance_scale: float,
    class_labels: Sequence[int] | None,
    covariates: np.ndarray | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Check the requested conditions against what the model was trained with.

    Returns (class_labels (N,) long or None, covariates (N, K) float32 or None).
    Raises :class:`ConfigError` naming ``label``, ``covariates`` or ``guidance_scale``.
    """
    spec = bundle.conditioning
    if float(guidance_scale) != 1.0:
        if not spec.conditional:
            raise ConfigError(
                "guidance_scale",
                f"is {guidance_scale} but the model is unconditional; guidance needs a conditional model",
            )
        if not spec.guidance_trained:
            raise ConfigError(
                "guidance_scale",
                f"is {guidance_scale} but the model was trained without condition dropout (no unconditional branch)",
            )
    labels = None
    if class_labels is not None:
        if spec.num_classes == 0:
            raise ConfigError("label", "the model was trained without class labels")
        labels = torch.as_tensor(list(class_labels), dtype=torch.long)
        if labels.shape != (n,):
            raise ConfigError("label", f"expected {n} class labels (one per seed), got {tuple(labels.shape)}")
        bad = [int(v) for v in labels if not 0 <= int(v) < spec.num_classes]
        if bad:
            raise ConfigError(
                "label",
                f"class index {bad[0]} is not one the model was trained with (0..{spec.num_classes - 1})",
            )
    elif spec.num_classes > 0 and not spec.guidance_trained:
        raise ConfigError("label", f"the model needs a class label (trained with {spec.num_classes} classes)")
    covs = None
    if covariates is not None:
        if not spec.covariate_keys:
            raise ConfigError("covariates", "the model was trained without covariates")
        covs = torch.as_tensor(np.asarray(covariates, dtype=np.float32))
        if covs.shape != (n, len(spec.covariate_keys)):
            raise ConfigError(
                "covariates",
                f"expected shape ({n}, {len(spec.covariate_keys)}) for {spec.covariate_keys}, got {tuple(covs.shape)}",
            )
    elif spec.covariate_keys and not spec.guidance_trained:
        raise ConfigError(
            "covariates", f"the model needs covariate values for {', '.join(spec.covariate_keys)}"
        )
    return labels, covs


def iter_generate(
    bundle: SamplingBundle,
    seeds: Sequence[int],
    sampler: str = "dpmpp3m",
    steps: int | None = None,
    eta: float = 0.0,
    guidance_scale: float = 1.0,
    class_labels: Sequence[int] | None = None,
    covariates: np.ndarray | None = None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    precision: str = "auto",
    grid: str | None = None,
    on_step: Callable[[float], None] | None = None,
    masks: Sequence | None = None,
) -> Iterator[GeneratedBatch]:
    """Generate ``len(seeds)`` volumes batch by batch (see :func:`generate_volumes` for arguments).

    ``masks``: for a mask-conditioned model, one (D, H, W) integer label map per seed (array-like,
    read when its batch runs); volume i then depends on (``seeds[i]``, ``masks[i]``, settings).

    ``on_step(volumes)`` is called after every network step with the fraction of volumes it
    advanced (batch size / number of steps), for progress bars.
    """
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {batch_size}")
    seeds = [int(s) for s in seeds]
    labels, covs = validate_conditions(bundle, len(seeds), guidance_scale, class_labels, covariates)
    if bundle.geometry.mask_conditioned != (masks is not None):
        raise ConfigError(
            "masks_dir",
            "the model is mask-conditioned: give one label map per sample (masks_dir=DIR)"
            if masks is None
            else "the model was not trained with label maps as conditioning (data.label_map_mode=condition)",
        )
    if masks is not None and len(masks) != len(seeds):
        raise ConfigError("masks_dir", f"expected {len(seeds)} label maps (one per seed), got {len(masks)}")
    device = resolve_device(device)
    precision = sampling_precision(precision, device)
    solver = build_sampler(sampler, bundle.diffusion, steps, eta, grid)
    n_evals = solver.network_evaluations
    latent = tuple(bundle.representation.latent_shape(tuple(bundle.geometry.shape)))
    network = bundle.network.to(device).eval()
    guidance = float(guidance_scale)

    for start in range(0, len(seeds), batch_size):
        t0 = time.perf_counter()
        positions = list(range(start, min(start + batch_size, len(seeds))))
        generators = [torch.Generator(device="cpu").manual_seed(seeds[p]) for p in positions]
        x_init = torch.stack([torch.randn(latent, generator=g, dtype=torch.float32) for g in generators]).to(
            device
        )
        batch_labels = labels[positions].to(device) if labels is not None else None
        batch_covs = covs[positions].to(device) if covs is not None else None
        condition = None
        if masks is not None:  # (b, c K, d, h, w): the label channels, concatenated at every step
            batch_masks = torch.stack([torch.as_tensor(np.asarray(masks[p])).long() for p in positions])
            condition = mask_condition(bundle.representation, batch_masks, bundle.geometry.label_classes).to(device)

        def noise(shape: tuple[int, ...], generators=generators) -> torch.Tensor:
            return torch.stack(
                [torch.randn(shape[1:], generator=g, dtype=torch.float32) for g in generators]
            ).to(device)

        def model(
            x_t: torch.Tensor, t: int, batch_labels=batch_labels, batch_covs=batch_covs, condition=condition
        ) -> torch.Tensor:
            timesteps = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=device)
            if condition is not None:
                x_t = torch.cat([x_t, condition.to(x_t.dtype)], dim=1)
            with autocast(device, precision):
                out = network(x_t, timesteps, class_labels=batch_labels, covariates=batch_covs).float()
                if guidance != 1.0:
                    uncond = network(x_t, timesteps, class_labels=None, covariates=None).float()
                    out = uncond + guidance * (out - uncond)
            return out

        denoise = make_denoiser(model, bundle.diffusion, solver.grid, bundle.representation.clip_bounds())
        with torch.inference_mode():
            x = x_init
            for x in solver.run(denoise, x_init, noise):  # noqa: B007 (x: the last step's output)
                if on_step is not None:
                    on_step(len(positions) / n_evals)
            volumes = bundle.representation.decode(x.float()).clamp(-1.0, 1.0).float().cpu()
        yield GeneratedBatch(positions=positions, volumes=volumes, seconds=time.perf_counter() - t0)


def generate_volumes(
    bundle: SamplingBundle,
    seeds: Sequence[int],
    sampler: str = "dpmpp3m",
    steps: int | None = None,
    eta: float = 0.0,
    guidance_scale: float = 1.0,
    class_labels: Sequence[int] | None = None,
    covariates: np.ndarray | None = None,
    batch_size: int = 4,
    device: torch.device | None = None,
    precision: str = "auto",
    grid: str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample one volume per seed.

    Args:
        bundle: the model and its training settings (``load_for_sampling`` or ``DiffusionModule.sampling_bundle``).
        seeds: one generator seed per volume; volume i depends on ``seeds[i]`` and the settings only.
        sampler: a name in :data:`medsynth.sampling.samplers.SAMPLERS` (``dpmpp3m``, 20 steps, is the default).
        steps: grid steps (network evaluations; heun 2 * steps - 1); ``None``: the sampler's default.
        eta: step noise of ddim, dpmpp and dpmpp3m (0 deterministic; ddim 1: DDPM-like; dpmpp 1: the SDE form); ignored by the others.
        guidance_scale: classifier-free guidance weight (1 = plain conditional sampling).
        class_labels: (N,) class indices for a class-conditional model.
        covariates: (N, K) float covariates in ``bundle.conditioning.covariate_keys`` order.
        batch_size: volumes per network call.
        device: ``None`` = CUDA if available, else CPU.
        precision: ``auto`` (bf16 where native), ``32``, ``bf16`` or ``16`` (CUDA) autocast.
        grid: ``uniform`` | ``logsnr`` | ``karras`` (:func:`~medsynth.sampling.samplers.noise_grid`); None: the sampler's.
        progress: show a rich progress bar.

    Returns:
        (N, 1, D, H, W) float32 CPU tensor in [-1, 1] (model intensity space).
    """
    from medsynth.sampling.progress import generation_progress

    out: list[torch.Tensor | None] = [None] * len(seeds)
    with generation_progress(disable=not progress) as bar:
        task = bar.add_task(f"sampling ({sampler})", total=len(seeds))
        for batch in iter_generate(
            bundle,
            seeds,
            sampler=sampler,
            steps=steps,
            eta=eta,
            guidance_scale=guidance_scale,
            class_labels=class_labels,
            covariates=covariates,
            batch_size=batch_size,
            device=device,
            precision=precision,
            grid=grid,
            on_step=lambda v: bar.advance(task, v),
        ):
            for j, p in enumerate(batch.positions):
                out[p] = batch.volumes[j : j + 1]
    if not out:
        shape = tuple(bundle.geometry.shape)
        return torch.empty((0, 1, *shape), dtype=torch.float32)
    return torch.cat(out, dim=0)  # type: ignore[arg-type]
