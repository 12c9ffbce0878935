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
    q          round((v - lo) / (hi - lo) * (L - 1)): integer stack units, (X, Y, Z)
    coding     ``planes``: w = q; ``diff3d``: w = zigzag(Dx Dy Dz q), the 3D difference (Lorenzo
               predictor; its inverse is a cumulative sum along Z, Y and X), zigzag(d) = 2d or -2d-1
    coded      the 16-bit words w in C order as two byte planes: all low bytes, then all high bytes
    stream     zlib (RFC 1950) of ``coded``, ended by stored blocks of zeros so that the message is
               exactly ``M`` bytes (``render.viewer.message_bytes``); the browser inflates it with its
               built-in ``DecompressionStream("deflate")`` and reads the first 2 X Y Z bytes
    message    uint32 header length, JSON header (space-padded), the stream; binary, no base64

Every message of a study has the same length M: a compressed length depends on the image (a smooth
case compresses better than a noisy one) and ``medsynth study audit`` (channel
``viewer_payload_bytes``) refuses such a side channel. M and the coding are fixed for the whole
study when it is created (:func:`viewer_settings`: the coding whose largest case is smallest, M that
case's length; or M from the config, refusing a case that does not fit) and stored in its render
settings; each case is coded once then and stored (``models.ViewerStream``), so serving a case is a
read of its stored stream padded to M, whatever the image.

Windows are sent in stack units only (level and width of q), so no intensity in source units reaches
the browser; L = 4096 levels over the case's range is a step of 1/4095 of that range, below any
window a reader can set (and exact for integer CT values spanning up to 4096 HU). Why by hand: no
library packs a volume for a browser canvas viewer; the deflate itself is zlib's.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import ConfigError
from medsynth.study.administration import MODALITIES
from medsynth.study.audit import CaseRender, channel
from medsynth.study.rendering import Window, auto_window

HEADER_BLOCK = 1024  # bytes: the message header is space-padded to a multiple of this
CODINGS = ("planes", "diff3d")
_STORED_MAX = 65535  # bytes of data in one deflate stored block (RFC 1951, 3.2.4)
_STORED_OVERHEAD = 5  # its header: 1 byte BFINAL/BTYPE, LEN and NLEN (2 bytes each)
_TRAILER = 4  # zlib's Adler-32


class PayloadTooLarge(ValueError):
    """A case's message does not fit the study's ``render.viewer.message_bytes``."""


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
    study grid over the prepared field of view); ``deflated`` the zlib stream of the coded stack up
    to a byte-aligned (sync) flush, not yet finished; ``adler`` the Adler-32 of the coded bytes.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    levels: int
    coding: str
    deflated: bytes
    adler: int
    presets: tuple[WindowPreset, ...]
    default_preset: str

    def header(self, showing: int) -> dict[str, Any]:
        """Everything but the stack, for the reader's ``showing`` (position in their order)."""
        return {
            "showing": int(showing),
            "shape": list(self.shape),
            "spacing": [round(float(s), 4) for s in self.spacing],
            "levels": self.levels,
            "coding": self.coding,
            "presets": [p.__dict__ for p in self.presets],
            "default_preset": self.default_preset,
        }

    def record(self) -> tuple[dict[str, Any], bytes, int]:
        """What a study stores per case (``models.ViewerStream``): header without the showing,
        the unfinished stream and its Adler-32."""
        header = self.header(0)
        del header["showing"]
        return header, self.deflated, self.adler

    @classmethod
    def from_record(cls, header: Mapping[str, Any], deflated: bytes, adler: int) -> ViewerPayload:
        """Inverse of :meth:`record`."""
        return cls(
            shape=tuple(int(s) for s in header["shape"]), spacing=tuple(float(s) for s in header["spacing"]),
            levels=int(header["levels"]), coding=str(header["coding"]), deflated=bytes(deflated),
            adler=int(adler), presets=tuple(WindowPreset(**p) for p in header["presets"]),
            default_preset=str(header["default_preset"]),
        )  # fmt: skip

    def _head(self, showing: int) -> bytes:
        header = json.dumps(self.header(showing)).encode("utf-8")
        header += b" " * (-len(header) % HEADER_BLOCK)  # numbers vary in length: so does not the message
        return struct.pack("<I", len(header)) + header

    def smallest_message(self) -> int:
        """Bytes of the shortest message this case can be sent in (its stream closed at once)."""
        return len(self._head(0)) + len(self.deflated) + _STORED_OVERHEAD + _TRAILER

    def message(self, showing: int, size: int | None = None) -> bytes:
        """What the component receives (binary, no base64): header length (uint32 little-endian),
        the header as UTF-8 JSON space-padded to a multiple of ``HEADER_BLOCK`` bytes, the zlib
        stream, padded so that the message is exactly ``size`` bytes (default: the smallest).

        Raises:
            PayloadTooLarge: the case needs more than ``size`` bytes.
        """
        head = self._head(showing)
        size = self.smallest_message() if size is None else int(size)
        return head + finish_stream(self.deflated, self.adler, size - len(head))


def finish_stream(deflated: bytes, adler: int, size: int) -> bytes:
    """Close a sync-flushed zlib stream so that it is exactly ``size`` bytes: stored blocks of zeros
    (the last one final), then the Adler-32 of everything the stream inflates to.

    Raises:
        PayloadTooLarge: ``size`` is below the stream's length plus one stored block and the trailer.
    """
    fill = int(size) - len(deflated) - _TRAILER
    if fill < _STORED_OVERHEAD:
        raise PayloadTooLarge(f"needs {len(deflated) + _STORED_OVERHEAD + _TRAILER} bytes, has {size}")
    parts = [deflated]
    while True:
        rest = fill - _STORED_OVERHEAD
        final = rest <= _STORED_MAX
        length = rest if final else min(_STORED_MAX, rest - _STORED_OVERHEAD)  # leave room for one more block
        parts.append(struct.pack("<BHH", int(final), length, length ^ 0xFFFF) + bytes(length))
        adler = zlib.adler32(bytes(length), adler)
        fill -= _STORED_OVERHEAD + length
        if final:
            break
    parts.append(struct.pack(">I", adler))
    return b"".join(parts)


def parse_message(message: bytes) -> tuple[dict[str, Any], bytes]:
    """Inverse of :meth:`ViewerPayload.message` (what ``viewer.js`` does): (header, stream)."""
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


def check_coding(coding: str, levels: int) -> None:
    """Raises ConfigError for an unknown coding, or ``diff3d`` with more than 8192 levels (its
    zigzagged differences, up to 8 (L - 1), must fit 16 bits)."""
    if coding not in CODINGS:
        raise ConfigError("render.viewer.coding", f"must be auto or one of {', '.join(CODINGS)}, got '{coding}'")
    if coding == "diff3d" and int(levels) > 8192:
        raise ConfigError("render.viewer.coding", f"diff3d needs render.viewer.levels <= 8192, got {levels}")


def encode_stack(stack: np.ndarray, coding: str) -> bytes:
    """uint16 (X, Y, Z) stack -> coded bytes (module docstring): 16-bit words as two byte planes."""
    if coding == "diff3d":
        d = np.asarray(stack, dtype=np.int32)
        for axis in range(3):
            d = np.diff(d, axis=axis, prepend=0)
        words = ((d << 1) ^ (d >> 31)).astype(np.uint16)  # zigzag: 0, -1, 1, -2 -> 0, 1, 2, 3
    elif coding == "planes":
        words = np.asarray(stack, dtype=np.uint16)
    else:
        raise ValueError(f"unknown coding '{coding}'")
    data = np.ascontiguousarray(words, dtype="<u2").view(np.uint8).reshape(-1, 2)
    return np.ascontiguousarray(data.T).tobytes()


def decode_stack(coded: bytes, shape: Sequence[int], coding: str) -> np.ndarray:
    """Inverse of :func:`encode_stack` (what ``viewer.js`` does in the browser); bytes beyond the
    two planes (the stream's zero padding) are ignored."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    planes = np.frombuffer(coded, np.uint8, count=2 * n).reshape(2, n).astype(np.int32)
    words = planes[0] | (planes[1] << 8)
    if coding == "planes":
        return words.astype(np.uint16).reshape(shape)
    q = ((words >> 1) ^ -(words & 1)).reshape(shape)
    for axis in (2, 1, 0):
        q = np.cumsum(q, axis=axis, dtype=np.int32)
    return q.astype(np.uint16)


def deflate(coded: bytes, level: int) -> tuple[bytes, int]:
    """zlib stream of ``coded`` up to a sync flush (byte-aligned, not final), and its Adler-32."""
    compressor = zlib.compressobj(int(level))
    return compressor.compress(coded) + compressor.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(coded)


def inflate(message: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """A message back to (header, uint16 stack (X, Y, Z)): what the browser does, with zlib."""
    header, stream = parse_message(message)
    return header, decode_stack(zlib.decompress(stream), header["shape"], header["coding"])


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
    """Encode a display volume (X, Y, Z) and the modality's presets for the viewer, with the
    study's coding (``render.viewer.coding``; ``planes`` while it is still ``auto``)."""
    viewer = render.get("viewer", {}) or {}
    levels = int(viewer.get("levels", 4096))
    coding = str(viewer.get("coding") or "auto")
    coding = "planes" if coding == "auto" else coding
    check_coding(coding, levels)
    stack, lo, hi = quantise(volume, levels)
    presets = tuple(
        WindowPreset(name, label, *to_stack_window(window, lo, hi, levels))
        for name, label, window in window_presets(volume, render, modality)
    )
    names = [p.name for p in presets]
    default = str(render.get("default_preset", "auto"))
    deflated, adler = deflate(encode_stack(stack, coding), int(viewer.get("deflate_level", 6)))
    return ViewerPayload(
        shape=tuple(int(s) for s in volume.shape),
        spacing=tuple(float(s) for s in spacing),
        levels=levels,
        coding=coding,
        deflated=deflated,
        adler=adler,
        presets=presets,
        default_preset=default if default in names else names[0],
    )


def settled(render: Mapping) -> bool:
    """Whether a study's viewer coding and message length are fixed (:func:`viewer_settings`)."""
    viewer = render.get("viewer", {}) or {}
    return viewer.get("coding") in CODINGS and viewer.get("message_bytes") is not None


def viewer_settings(paths: Sequence[str], render: Mapping, modality: str, progress: bool = False) -> dict:
    """Fix a study's viewer coding and message length over its cases; returns ``render.viewer``
    with ``coding`` and ``message_bytes`` set.

    ``coding: auto`` tries every coding and keeps the one whose largest message is smallest (the
    coding is the same for every case, so it tells nothing about one). ``message_bytes: null``
    becomes that largest message; a number is kept as a cap that every case must fit.

    Raises:
        ConfigError: a case does not fit ``render.viewer.message_bytes``, or a bad coding.
        InputFileError: a case does not load.
    """
    from rich.progress import track

    from medsynth.study.rendering import load_display_volume

    viewer = dict(render.get("viewer", {}) or {})
    levels = int(viewer.get("levels", 4096))
    if not 1 <= int(viewer.get("deflate_level", 6)) <= 9:
        raise ConfigError("render.viewer.deflate_level", f"must be in 1..9, got {viewer.get('deflate_level')}")
    if viewer.get("message_bytes") is not None and int(viewer["message_bytes"]) <= 0:
        raise ConfigError("render.viewer.message_bytes", f"must be a positive number or null, got {viewer['message_bytes']}")
    wanted = str(viewer.get("coding") or "auto")
    if wanted == "auto":
        candidates = [c for c in CODINGS if c != "diff3d" or levels <= 8192]
    else:
        check_coding(wanted, levels)
        candidates = [wanted]
    grid = [int(g) for g in render["grid"]]
    rescale = render.get("rescale_from_unit")
    largest = {c: (0, "") for c in candidates}
    for path in track(list(paths), description="coding cases for the viewer", disable=not progress, transient=True):
        volume = load_display_volume(path, grid, rescale)
        spacing = display_spacing(path, grid)
        for coding in candidates:
            trial = {**render, "viewer": {**viewer, "coding": coding}}
            size = build_payload(volume, spacing, trial, modality).smallest_message()
            largest[coding] = max(largest[coding], (size, str(path)))
    coding = min(candidates, key=lambda c: largest[c][0])
    needed, path = largest[coding]
    cap = viewer.get("message_bytes")
    if cap is not None and needed > int(cap):
        raise ConfigError(
            "render.viewer.message_bytes", f"{int(cap)} bytes is too small: {path} needs {needed} with coding "
            f"{coding} (raise it, or leave it null to use the largest case's size)"
        )  # fmt: skip
    return {**viewer, "coding": coding, "message_bytes": int(cap) if cap is not None else needed}


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
    """Blinding audit channel: the bytes the browser viewer receives for a case (its whole message,
    padded to the study's ``render.viewer.message_bytes`` once that is fixed), as ``medsynth study
    audit`` sees every case."""
    payload = build_payload(case.volume, (1.0, 1.0, 1.0), case.render, study_modality(None, case.render))
    size = (case.render.get("viewer") or {}).get("message_bytes")
    return {"bytes": float(len(payload.message(0, size)))}
