"""What the browser viewer receives for one showing: the whole display volume, once, lossless.

The reader's browser slices, zooms and windows the case itself (``reader_study/viewer_component``),
so the server sends each case once instead of a PNG per slice. The payload is built from the same
display volume as every other rendering path (:meth:`StudyService.display_volume`: RAS, study grid,
identical preprocessing for real and synthetic cases) and carries no header field, file name or
date.

Encoding (the notation of ``viewer.js``):

    v          display volume (X, Y, Z) float32, RAS, in the study's intensity units
    lo, hi     its minimum and maximum
    L          quantisation levels (``render.viewer.levels``, e.g. 4096 = 12 bit)
    q          round((v - lo) / (hi - lo) * (L - 1)) as uint16: integer stack units
    stack      q in C order over (X, Y, Z), little-endian, split into its low-byte plane then its
               high-byte plane (the high bytes of a 12-bit stack compress to almost nothing),
               then zlib (browsers inflate it natively: ``DecompressionStream('deflate')``)

Windows are sent in stack units only (level and width of q), so no intensity in source units reaches
the browser; L = 4096 levels over the case's range is a step of 1/4095 of that range, below any
window a reader can set. Why by hand: no library encodes a volume for a browser canvas viewer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.study.rendering import Window, auto_window

MODALITIES = ("mr", "ct")


@dataclass(frozen=True)
class WindowPreset:
    """A named window in stack units (``level`` +- ``width`` / 2 maps to black..white)."""

    name: str
    label: str
    level: float
    width: float


@dataclass(frozen=True)
class ViewerPayload:
    """One case for the browser viewer.

    ``shape`` is (X, Y, Z) in RAS order; ``spacing`` the display voxel size in mm per axis (the
    study grid over the prepared field of view); ``stack`` the encoded volume (module docstring).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    levels: int
    stack: bytes
    presets: tuple[WindowPreset, ...]
    default_preset: str

    def to_data(self) -> dict[str, Any]:
        """The JSON the component receives (the stack base64-encoded)."""
        return {
            "shape": list(self.shape),
            "spacing": [round(float(s), 4) for s in self.spacing],
            "levels": self.levels,
            "stack": base64.b64encode(self.stack).decode("ascii"),
            "presets": [p.__dict__ for p in self.presets],
            "default_preset": self.default_preset,
        }


def quantise(volume: np.ndarray, levels: int) -> tuple[np.ndarray, float, float]:
    """(X, Y, Z) float volume -> (uint16 stack in 0..levels-1, lo, hi) over the volume's range."""
    if not 2 <= int(levels) <= 65536:
        raise ValueError(f"render.viewer.levels must be in 2..65536, got {levels}")
    lo, hi = float(volume.min()), float(volume.max())
    span = hi - lo if hi > lo else 1.0
    scaled = (volume.astype(np.float64) - lo) * ((int(levels) - 1) / span)
    return np.rint(scaled).astype(np.uint16), lo, hi


def encode_stack(stack: np.ndarray, compression: int) -> bytes:
    """uint16 (X, Y, Z) -> low-byte plane + high-byte plane (C order), zlib-compressed."""
    raw = np.ascontiguousarray(stack, dtype="<u2").view(np.uint8).reshape(-1, 2)
    return zlib.compress(np.ascontiguousarray(raw.T).tobytes(), int(compression))


def decode_stack(blob: bytes, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`encode_stack` (what ``viewer.js`` does in the browser)."""
    planes = np.frombuffer(zlib.decompress(blob), dtype=np.uint8).reshape(2, -1)
    return np.ascontiguousarray(planes.T).view("<u2").reshape(tuple(int(s) for s in shape))


def to_stack_window(window: Window, lo: float, hi: float, levels: int) -> tuple[float, float]:
    """A window in source units -> (level, width) in stack units."""
    scale = (int(levels) - 1) / (hi - lo if hi > lo else 1.0)
    return (window.level - lo) * scale, window.width * scale


def window_presets(volume: np.ndarray, render: Mapping, modality: str) -> list[tuple[str, str, Window]]:
    """The presets a study of ``modality`` offers, as (name, label, window in source units).

    MR studies get percentile windows only (``render.viewer.mr_presets``); CT studies get their
    percentile windows plus the fixed HU windows of ``render.presets``.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got '{modality}'")
    viewer = render.get("viewer", {}) or {}
    out = []
    for name, spec in (viewer.get("mr_presets") or {"auto": {"percentiles": [1.0, 99.5]}}).items():
        if modality == "mr" or name == "auto":
            label = spec.get("label", name.replace("_", " "))
            out.append((name, label, auto_window(volume, spec["percentiles"])))
    if modality == "ct":
        for name, spec in (render.get("presets") or {}).items():
            label = spec.get("label", name.replace("ct_", "").replace("_", " "))
            out.append((name, label, Window(level=float(spec["level"]), width=float(spec["width"]))))
    return out


def build_payload(
    volume: np.ndarray, spacing: Sequence[float], render: Mapping, modality: str = "mr"
) -> ViewerPayload:
    """Encode a display volume (X, Y, Z) and the modality's presets for the viewer."""
    viewer = render.get("viewer", {}) or {}
    levels = int(viewer.get("levels", 4096))
    stack, lo, hi = quantise(volume, levels)
    presets = tuple(
        WindowPreset(name, label, *to_stack_window(window, lo, hi, levels))
        for name, label, window in window_presets(volume, render, modality)
    )
    names = [p.name for p in presets]
    default = str(render.get("default_preset", "auto"))
    return ViewerPayload(
        shape=tuple(int(s) for s in volume.shape),
        spacing=tuple(float(s) for s in spacing),
        levels=levels,
        stack=encode_stack(stack, int(viewer.get("compression", 6))),
        presets=presets,
        default_preset=default if default in names else names[0],
    )


@functools.lru_cache(maxsize=8)
def _cached_payload(volume_ref: _Ref, spacing: tuple, render_key: str, modality: str) -> dict:
    import json

    return build_payload(volume_ref.volume, spacing, json.loads(render_key), modality).to_data()


class _Ref:
    """Hashable by digest only, so the lru cache does not hash the array itself."""

    def __init__(self, volume: np.ndarray, digest: str):
        self.volume, self.digest = volume, digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Ref) and other.digest == self.digest


def payload_data(volume: np.ndarray, spacing: Sequence[float], render: Mapping, modality: str) -> dict:
    """:meth:`ViewerPayload.to_data` of :func:`build_payload`, cached by the volume's content."""
    import json

    digest = hashlib.blake2b(np.ascontiguousarray(volume).data, digest_size=16).hexdigest()
    key = json.dumps(dict(render), sort_keys=True, default=str)
    spacing = tuple(round(float(s), 6) for s in spacing)
    return dict(_cached_payload(_Ref(volume, digest), spacing, key, modality))


def display_spacing(path: str | Path, grid: Sequence[int]) -> tuple[float, float, float]:
    """Voxel size (mm) of the study grid over the file's field of view, per RAS axis (X, Y, Z).

    Reads the header only. The field of view is the prepared space's (shape x voxel size), the same
    for every case of a study whose sets share a preprocessing fingerprint.
    """
    import nibabel as nib

    try:
        image = nib.load(str(path))  # header only
        affine, shape = image.affine, image.shape
    except Exception:  # DICOM folders, .mha, .nrrd: the reader used for display
        from medsynth.data.validation import load_checked_volume

        volume = load_checked_volume(path)
        affine, shape = volume.affine, volume.array.shape
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ornt = nib.orientations.io_orientation(affine)
    extent = [0.0, 0.0, 0.0]
    for axis, (ras_axis, _flip) in enumerate(ornt):
        extent[int(ras_axis)] = float(shape[axis] * sizes[axis])
    return tuple(e / int(g) for e, g in zip(extent, grid, strict=True))
