"""Optional 3D network features (MedicalNet-style ResNet) for 3D FID / KID.

MedicalNet weights (Chen et al. 2019; Tencent) cannot be downloaded at run time here, so the user
points ``feature_extractor.weights`` at a local ``.pth`` file (MedicalNet's ``resnet_10.pth``,
``resnet_18_23dataset.pth``, ... with a ``state_dict`` whose keys may carry ``module.``). The
network is MONAI's ``resnet10/18/34/50`` built with MedicalNet's shortcut settings; the features
are the global-average-pooled last block (512 or 2048 values per volume).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medsynth.errors import ConfigError, InputFileError

ARCHITECTURES = ("resnet10", "resnet18", "resnet34", "resnet50")


def build_medicalnet_resnet(arch: str, weights: str | Path) -> torch.nn.Module:
    """MONAI ResNet (spatial_dims=3, 1 channel, no classifier) with MedicalNet weights loaded.

    Raises:
        ConfigError: unknown architecture.
        InputFileError: the weights file is missing, unreadable or does not fit the network.
    """
    from monai.networks.nets import resnet

    if arch not in ARCHITECTURES:
        raise ConfigError("feature_extractor.arch", f"'{arch}' is not one of {ARCHITECTURES}")
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise InputFileError(path, "feature_extractor.weights: file does not exist")
    depth = int(arch.removeprefix("resnet"))
    bias_downsample, shortcut_type = resnet.get_medicalnet_pretrained_resnet_args(depth)
    network = getattr(resnet, arch)(
        spatial_dims=3,
        n_input_channels=1,
        feed_forward=False,
        shortcut_type=shortcut_type,
        bias_downsample=bias_downsample,
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for non-checkpoint files
        raise InputFileError(
            path, f"not a PyTorch weights file ({' '.join(str(err).split())[:150]})"
        ) from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise InputFileError(path, "holds no state_dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    own = network.state_dict()
    missing = [key for key in own if key not in state]
    wrong = [key for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    if missing or wrong:
        detail = f"missing {missing[:2]}" if missing else f"shape mismatch at {wrong[:2]}"
        raise InputFileError(path, f"does not fit MONAI {arch} with MedicalNet settings ({detail})")
    network.load_state_dict({key: state[key] for key in own})  # drops MedicalNet's segmentation head
    return network.eval()


def medicalnet_input(volume: np.ndarray, shape: Sequence[int] | None) -> torch.Tensor:
    """(1, 1, D, H, W) float32: resized (trilinear) to ``shape`` and z-scored over non-zero voxels,
    as MedicalNet's training pipeline normalised its inputs."""
    tensor = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None, None]
    if shape is not None and tuple(tensor.shape[2:]) != tuple(shape):
        tensor = torch.nn.functional.interpolate(tensor, size=tuple(int(s) for s in shape), mode="trilinear")
    foreground = tensor[tensor != 0]
    reference = foreground if foreground.numel() > 1 else tensor.reshape(-1)
    return (tensor - reference.mean()) / reference.std().clamp_min(1e-6)


@torch.no_grad()
def resnet_features(
    network: torch.nn.Module,
    volumes: Sequence[np.ndarray],
    input_shape: Sequence[int] | None = None,
    batch_size: int = 4,
    device: torch.device | None = None,
) -> np.ndarray:
    """(N, C) features: the network's pooled output for each volume (X, Y, Z)."""
    device = device or next(network.parameters()).device
    network = network.to(device)
    rows = []
    for start in range(0, len(volumes), batch_size):
        batch = torch.cat([medicalnet_input(v, input_shape) for v in volumes[start : start + batch_size]])
        rows.append(network(batch.to(device)).reshape(len(batch), -1).double().cpu().numpy())
    return np.concatenate(rows, axis=0)
