"""Read a training checkpoint for sampling: ``load_for_sampling(path) -> SamplingBundle``.

Checkpoint layout (a Lightning checkpoint written by :class:`~medsynth.models.diffusion_module.DiffusionModule`):

- ``state_dict``: ``network.*`` (live weights), ``ema.module.*`` (EMA weights), ``ema.n_averaged``
- ``hyper_parameters``: {"config": resolved training config, "geometry", "conditioning", "intensity", ...}
- ``medsynth``: {"format", "representation", "diffusion", "conditioning", "geometry" {"shape",
  "spacing", "affine"}, "intensity", "network" (DiffusionModelUNet kwargs), "config_hash"}
- the usual Lightning entries (optimizer_states, lr_schedulers, loops, callbacks, global_step, epoch)
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from medsynth.errors import InputFileError
from medsynth.models.bundle import ConditioningSpec, SamplingBundle
from medsynth.models.diffusion_module import build_network, bundle_from_metadata
from medsynth.models.ema import EMA_PREFIX, NETWORK_PREFIX

REQUIRED_META = ("representation", "diffusion", "conditioning", "geometry", "network")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a medsynth checkpoint dict, raising :class:`InputFileError` for missing, corrupt or foreign files.

    Loaded with ``weights_only=True``: medsynth checkpoints hold only tensors and plain containers,
    so a foreign pickle cannot run code.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such checkpoint file")
    if not path.is_file():
        raise InputFileError(path, "is not a file (expected a .ckpt written by medsynth train)")
    if path.stat().st_size == 0:
        raise InputFileError(path, "empty checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(
            path, f"not a readable PyTorch checkpoint (corrupt, truncated or foreign): {reason}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputFileError(path, "not a Lightning checkpoint (no state_dict)")
    meta = checkpoint.get("medsynth")
    if not isinstance(meta, dict) or any(key not in meta for key in REQUIRED_META):
        raise InputFileError(
            path, "not a medsynth training checkpoint (no 'medsynth' section; train with medsynth train)"
        )
    return checkpoint


def load_for_sampling(
    path: str | Path, use_ema: bool = True, map_location: str | torch.device = "cpu"
) -> SamplingBundle:
    """The network (EMA weights by default, eval mode, on ``map_location``) and everything sampling needs.

    Raises:
        InputFileError: the file is missing, corrupt, not a medsynth checkpoint, or its weights do
            not match the architecture it declares.
    """
    checkpoint = read_checkpoint(path, map_location)
    meta = checkpoint["medsynth"]
    state = checkpoint["state_dict"]
    has_ema = any(key.startswith(EMA_PREFIX) for key in state)
    prefix = EMA_PREFIX if (use_ema and has_ema) else NETWORK_PREFIX
    weights = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    if not weights:
        raise InputFileError(path, f"checkpoint has no network weights under '{prefix}'")
    try:
        network = build_network(meta["network"], ConditioningSpec(**meta["conditioning"]))
        network.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError, ValueError) as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(path, f"weights do not match the declared network: {reason}") from None
    network.to(map_location).eval().requires_grad_(False)
    return bundle_from_metadata(
        meta,
        network,
        checkpoint_path=str(Path(path).resolve()),
        checkpoint_sha256=file_sha256(path),
        used_ema=prefix == EMA_PREFIX,
    )
