"""Generate the samples of a plan and write each one as soon as its batch is done (one process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medsynth.data.writing import write_label_nifti
from medsynth.models.bundle import SamplingBundle
from medsynth.models.paired import split_image_label
from medsynth.sampling.export import label_file_name, write_volume
from medsynth.sampling.generate import iter_generate
from medsynth.sampling.plan import GenerationSettings, SampleSpec, load_mask
from medsynth.sampling.progress import generation_progress


def covariate_array(bundle: SamplingBundle, specs: list[SampleSpec]) -> np.ndarray | None:
    """(N, K) covariates of ``specs`` in the model's key order (None for a model without covariates)."""
    keys = list(bundle.conditioning.covariate_keys)
    if not keys or not specs or not specs[0].covariates:
        return None
    return np.array([[s.covariates[k] for k in keys] for s in specs], dtype=np.float32)


class _MaskSequence:
    """The given label maps of ``specs``, read (and checked) when their batch runs: (D, H, W) uint8 each."""

    def __init__(self, bundle: SamplingBundle, specs: list[SampleSpec]):
        self.bundle, self.specs = bundle, specs

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, position: int) -> np.ndarray:
        return load_mask(self.specs[position].mask, self.bundle)


def write_samples(
    bundle: SamplingBundle,
    specs: list[SampleSpec],
    settings: GenerationSettings,
    out_dir: str | Path,
    batch_size: int,
    device: torch.device | str | None = None,
    progress: bool = True,
    description: str = "sampling",
) -> dict[int, float]:
    """Generate and write ``specs`` into ``out_dir``; return {sample index: seconds per volume}."""
    out_dir = Path(out_dir)
    seconds: dict[int, float] = {}
    if not specs:
        return seconds
    labels = [s.label_index for s in specs] if specs[0].label_index is not None else None
    masks = _MaskSequence(bundle, specs) if bundle.geometry.mask_conditioned else None
    with generation_progress(disable=not progress) as bar:
        task = bar.add_task(f"{description} ({settings.sampler})", total=len(specs))
        for batch in iter_generate(
            bundle,
            [s.seed for s in specs],
            sampler=settings.sampler,
            steps=settings.steps,
            eta=settings.eta,
            grid=settings.grid,
            guidance_scale=settings.guidance_scale,
            class_labels=labels,
            covariates=covariate_array(bundle, specs),
            batch_size=batch_size,
            device=device,
            precision=settings.precision,
            on_step=lambda v: bar.advance(task, v),
            masks=masks,
        ):
            per_volume = batch.seconds / len(batch.positions)
            images, labels_out = batch.volumes, None
            if bundle.geometry.mask_conditioned:  # the given label maps, written beside their images
                labels_out = torch.stack([torch.as_tensor(masks[p]) for p in batch.positions])
            elif bundle.geometry.label_classes:  # joint model: image channel + argmax of the label channels
                images, labels_out = split_image_label(batch.volumes)
            for j, position in enumerate(batch.positions):
                spec = specs[position]
                if labels_out is not None:  # the label first: a finished image means a finished pair
                    label_path = out_dir / label_file_name(spec.file)
                    write_label_nifti(label_path, labels_out[j].numpy(), bundle.geometry.affine)
                write_volume(
                    out_dir / spec.file,
                    images[j, 0].numpy(),
                    bundle.geometry,
                    intensity=settings.intensity,
                    mapping=bundle.intensity,
                    dtype=settings.dtype,
                    key=spec.key,
                    seconds=per_volume,
                )
                seconds[spec.index] = per_volume
    return seconds
