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
    q          round((v - lo) / (hi - lo) * (L - 1)): integer stack units, C order over (X, Y, Z)
    bits       8 (L <= 256), 12 (L <= 4096: two voxels in three bytes) or 16 (little-endian)
    message    uint32 header length, JSON header (space-padded), the packed stack; binary, no base64

Windows are sent in stack units only (level and width of q), so no intensity in source units reaches
the browser; L = 4096 levels over the case's range is a step of 1/4095 of that range, below any
window a reader can set (and exact for integer CT values spanning up to 4096 HU). The stack is not
compressed: a compressed length depends on the image (a smooth case compresses better than a noisy
one) and ``medsynth study audit`` (channel ``viewer_payload_bytes``) refuses such a side channel, so
every case of a study sends exactly the same number of bytes. Why by hand: no library packs a volume
for a browser canvas viewer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.study.administration import MODALITIES
from medsynth.study.audit import CaseRender, channel
from medsynth.study.rendering import Window, auto_window

HEADER_BLOCK = 1024  # bytes: the message header is space-padded to a multiple of this


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

    def header(self, showing: int) -> dict[str, Any]:
        """Everything but the stack, for the reader's ``showing`` (position in their order)."""
        return {
            "showing": int(showing),
            "shape": list(self.shape),
            "spacing": [round(float(s), 4) for s in self.spacing],
            "levels": self.levels,
            "bits": stack_bits(self.levels),
            "presets": [p.__dict__ for p in self.presets],
            "default_preset": self.default_preset,
        }

    def message(self, showing: int) -> bytes:
        """What the component receives (binary, no base64): header length (uint32 little-endian),
        the header as UTF-8 JSON space-padded to a multiple of ``HEADER_BLOCK`` bytes, the stack."""
        header = json.dumps(self.header(showing)).encode("utf-8")
        header += b" " * (-len(header) % HEADER_BLOCK)  # numbers vary in length: so does not the message
        return struct.pack("<I", len(header)) + header + self.stack


def parse_message(message: bytes) -> tuple[dict[str, Any], bytes]:
    """Inverse of :meth:`ViewerPayload.message` (what ``viewer.js`` does): (header, stack)."""
    (length,) = struct.unpack_from("<I", message)
    header = json.loads(message[4 : 4 + length].decode("utf-8"))
    return header, message[4 + length :]


def quantise(volume: np.ndarray, levels: int) -> tuple[np.ndarray, float, float]:
    """(X, Y, Z) float volume -> (uint16 stack in 0..levels-1, lo, hi) over the volume's range."""
    if not 2 <= int(levels) <= 65536:
        raise ValueError(f"render.viewer.levels must be in 2..65536, got {levels}")
    lo, hi = float(volume.min()), float(volume.max())
    span = hi - lo if hi > lo else 1.0
    scaled = (volume.astype(np.float64) - lo) * ((int(levels) - 1) / span)
    return np.rint(scaled).astype(np.uint16), lo, hi


def stack_bits(levels: int) -> int:
    return 8 if levels <= 256 else 12 if levels <= 4096 else 16


def encode_stack(stack: np.ndarray, levels: int) -> bytes:
    """uint16 (X, Y, Z) in 0..levels-1 -> packed bytes (C order): 8, 12 or 16 bits per voxel."""
    flat = np.ascontiguousarray(stack, dtype=np.uint16).ravel()
    bits = stack_bits(levels)
    if bits == 8:
        return flat.astype(np.uint8).tobytes()
    if bits == 16:
        return flat.astype("<u2").tobytes()
    pairs = np.concatenate([flat, np.zeros(flat.size % 2, np.uint16)]).reshape(-1, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    packed = np.stack([a & 0xFF, (a >> 8) | ((b & 0x0F) << 4), b >> 4], axis=1).astype(np.uint8)
    return packed.tobytes()


def decode_stack(blob: bytes, shape: Sequence[int], levels: int) -> np.ndarray:
    """Inverse of :func:`encode_stack` (what ``viewer.js`` does in the browser)."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    bits = stack_bits(levels)
    if bits == 8:
        return np.frombuffer(blob, np.uint8).astype(np.uint16).reshape(shape)
    if bits == 16:
        return np.frombuffer(blob, "<u2").astype(np.uint16).reshape(shape)
    packed = np.frombuffer(blob, np.uint8).reshape(-1, 3).astype(np.uint16)
    a = packed[:, 0] | ((packed[:, 1] & 0x0F) << 8)
    b = (packed[:, 1] >> 4) | (packed[:, 2] << 4)
    return np.stack([a, b], axis=1).ravel()[:n].reshape(shape)


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
        stack=encode_stack(stack, levels),
        presets=presets,
        default_preset=default if default in names else names[0],
    )


@functools.lru_cache(maxsize=8)
def _cached_payload(volume_ref: _Ref, spacing: tuple, render_key: str, modality: str) -> ViewerPayload:
    return build_payload(volume_ref.volume, spacing, json.loads(render_key), modality)


class _Ref:
    """Hashable by digest only, so the lru cache does not hash the array itself."""

    def __init__(self, volume: np.ndarray, digest: str):
        self.volume, self.digest = volume, digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Ref) and other.digest == self.digest


def cached_payload(volume: np.ndarray, spacing: Sequence[float], render: Mapping, modality: str) -> ViewerPayload:
    """:func:`build_payload`, cached by the volume's content (and the settings)."""
    digest = hashlib.blake2b(np.ascontiguousarray(volume).data, digest_size=16).hexdigest()
    key = json.dumps(dict(render), sort_keys=True, default=str)
    spacing = tuple(round(float(s), 6) for s in spacing)
    return _cached_payload(_Ref(volume, digest), spacing, key, modality)


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


def study_modality(modality: str | None, render: dict) -> str:
    """The study's modality setting; studies created before it existed: CT when intensities are
    mapped back to physical units (``render.rescale_from_unit``), else MR."""
    if modality in MODALITIES:
        return modality
    return "ct" if render.get("rescale_from_unit") else "mr"


@channel("viewer_payload_bytes", group="format")
def _viewer_payload_bytes(case: CaseRender) -> dict[str, float]:
    """Blinding audit channel: the bytes the browser viewer receives for a case (its whole message),
    as ``medsynth study audit`` sees every case."""
    payload = build_payload(case.volume, (1.0, 1.0, 1.0), case.render, study_modality(None, case.render))
    return {"bytes": float(len(payload.message(0)))}
