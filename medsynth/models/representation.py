"""What the network diffuses: the volume itself (pixel) or its 3D Haar wavelet sub-bands (wavelet).

``WaveletRepresentation`` follows WDM (Friedrich et al. 2024): a one-level 3D Haar transform turns
a (B, 1, D, H, W) volume into 8 sub-bands of (D/2, H/2, W/2); the network diffuses those 8
channels at half resolution (about 8x fewer voxels per channel, 10x faster steps on a CPU). The
transform is ptwt's (``wavedec3`` / ``waverec3``, orthonormal) followed by a per-band scale
(``model.wavelet_scaling``):

==========  ==============================  =================================================
scaling     what is divided by 2*sqrt(2)    range of the diffused bands for a volume in [-1, 1]
==========  ==============================  =================================================
uniform     all 8 bands                     every band in [-1, 1]
lowband     the low band (channel 0) only   low band in [-1, 1]; detail bands keep their
                                            natural scale, |d| <= 2*sqrt(2) (WDM's choice)
==========  ==============================  =================================================

Notation: a = the orthonormal Haar low band (sum of a 2x2x2 block / (2*sqrt(2))), d_k the 7
orthonormal detail bands; ``g = 2*sqrt(2)`` (:data:`HAAR_GAIN`) is the largest |a| or |d_k| a
volume in [-1, 1] can give. Uniform diffuses (a, d_1..d_7) / g; lowband diffuses (a / g, d_1..d_7),
so the detail bands stand g (8x in power) higher above the same unit noise: under uniform scaling a
smooth brain's detail bands are small next to the noise at every step, and are learned last.
``model.wavelet_detail_gain`` (G, default 1) multiplies the detail bands on top of either scaling
(lowband with G: (a / g, G d_1..G d_7)): a brain's fine texture (Rician noise, tissue edges) has a
detail-band SD of 0.05-0.26 against the low band's 0.65, so at G = 1 it drowns in the noise early
and the network learns to predict its mean (smooth samples); G lifts it above the noise for longer.
:meth:`WaveletRepresentation.clip_bounds` gives the per-channel range that samplers clamp x0 to
(``clip_sample``); it is the one source of those bounds.
"""

from __future__ import annotations

import math

import torch

from medsynth.errors import ConfigError

#: ptwt's detail-band keys in a fixed channel order (channel 0 is the approximation "aaa")
WAVELET_DETAIL_KEYS = ("aad", "ada", "add", "daa", "dad", "dda", "ddd")
#: orthonormal 3D Haar gains up to 2*sqrt(2) on [-1, 1] data (8 voxels of +-1 over 2*sqrt(2)): the bound of every band
HAAR_GAIN = 2.0 * math.sqrt(2.0)
#: ``model.wavelet_scaling`` values (see the module docstring)
WAVELET_SCALINGS = ("uniform", "lowband")
#: the scaling a checkpoint without a ``wavelet_scaling`` entry was trained with (before it existed)
LEGACY_WAVELET_SCALING = "uniform"
#: the detail gain of a checkpoint without a ``wavelet_detail_gain`` entry (before it existed)
LEGACY_DETAIL_GAIN = 1.0


def check_detail_gain(gain: float) -> float:
    """``model.wavelet_detail_gain`` as a float; raises :class:`ConfigError` unless it is finite and > 0."""
    try:
        value = float(gain)
    except (TypeError, ValueError):
        raise ConfigError("model.wavelet_detail_gain", f"must be a number > 0, got {gain!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError("model.wavelet_detail_gain", f"must be a finite number > 0, got {gain!r}")
    return value


class PixelRepresentation:
    """Identity: the network diffuses the (B, 1, D, H, W) volume."""

    name = "pixel"
    downsample = 1

    def encode(self, volume: torch.Tensor) -> torch.Tensor:
        return volume

    def decode(self, coefficients: torch.Tensor) -> torch.Tensor:
        return coefficients

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        return (1, *(int(s) for s in image_shape))

    def clip_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each (1,) float64: the data range [-1, 1]."""
        return torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)


class WaveletRepresentation:
    """One-level 3D Haar: (B, 1, D, H, W) <-> (B, 8, D/2, H/2, W/2); D, H, W must be even.

    Channel 0 is the low-pass band (a blurred, half-size copy of the volume), channels 1-7 the
    detail bands in :data:`WAVELET_DETAIL_KEYS` order. ``decode(encode(x)) == x`` to float
    rounding (~1e-7). ``scaling``: ``uniform`` | ``lowband`` (module docstring).
    """

    name = "wavelet"
    downsample = 2
    wavelet = "haar"

    def __init__(self, scaling: str = LEGACY_WAVELET_SCALING, detail_gain: float = LEGACY_DETAIL_GAIN):
        if scaling not in WAVELET_SCALINGS:
            raise ConfigError(
                "model.wavelet_scaling", f"unknown '{scaling}' (choose from {', '.join(WAVELET_SCALINGS)})"
            )
        self.scaling = scaling
        self.detail_gain = check_detail_gain(detail_gain)

    def band_scale(self) -> torch.Tensor:
        """(8,) float64 divisor of each orthonormal band (channel order of :meth:`encode`)."""
        scale = torch.full((8,), HAAR_GAIN, dtype=torch.float64)
        if self.scaling == "lowband":
            scale[1:] = 1.0
        scale[1:] /= self.detail_gain
        return scale

    def clip_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each (8,) float64: the range of each diffused band for a volume in [-1, 1]
        (``HAAR_GAIN / band_scale``: 1 for every band under uniform, 1 and 2*sqrt(2) under lowband;
        the detail bounds times the detail gain)."""
        high = HAAR_GAIN / self.band_scale()
        return -high, high

    def encode(self, volume: torch.Tensor) -> torch.Tensor:
        import ptwt

        if volume.ndim != 5 or volume.shape[1] != 1:
            raise ValueError(f"expected (B, 1, D, H, W), got {tuple(volume.shape)}")
        if any(s % 2 for s in volume.shape[2:]):
            raise ValueError(f"wavelet representation needs even sizes, got {tuple(volume.shape[2:])}")
        approx, details = ptwt.wavedec3(volume[:, 0], self.wavelet, level=1, mode="zero")
        bands = [approx] + [details[key] for key in WAVELET_DETAIL_KEYS]
        return torch.stack(bands, dim=1) / self._scale_like(volume)

    def decode(self, coefficients: torch.Tensor) -> torch.Tensor:
        import ptwt

        if coefficients.ndim != 5 or coefficients.shape[1] != 8:
            raise ValueError(f"expected (B, 8, d, h, w), got {tuple(coefficients.shape)}")
        bands = coefficients * self._scale_like(coefficients)
        details = {key: bands[:, i + 1] for i, key in enumerate(WAVELET_DETAIL_KEYS)}
        volume = ptwt.waverec3((bands[:, 0], details), self.wavelet)
        return volume.unsqueeze(1)

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        return (8, *(int(s) // 2 for s in image_shape))

    def _scale_like(self, tensor: torch.Tensor) -> torch.Tensor:
        """:meth:`band_scale` as (1, 8, 1, 1, 1) on ``tensor``'s device and dtype."""
        return self.band_scale().to(tensor.device, tensor.dtype).view(1, 8, 1, 1, 1)


REPRESENTATIONS = {"pixel": PixelRepresentation, "wavelet": WaveletRepresentation}


def build_representation(
    name: str, wavelet_scaling: str = LEGACY_WAVELET_SCALING, detail_gain: float = LEGACY_DETAIL_GAIN
) -> PixelRepresentation | WaveletRepresentation:
    """``pixel`` or ``wavelet`` (with ``wavelet_scaling`` and ``detail_gain``, ignored by pixel); raises
    :class:`ConfigError` naming ``model.representation``, ``model.wavelet_scaling`` or
    ``model.wavelet_detail_gain`` for a bad value."""
    if name not in REPRESENTATIONS:
        raise ConfigError(
            "model.representation", f"unknown representation '{name}' (choose from pixel, wavelet)"
        )
    if name == "wavelet":
        return WaveletRepresentation(wavelet_scaling, detail_gain)
    check_detail_gain(detail_gain)
    if wavelet_scaling not in WAVELET_SCALINGS:
        raise ConfigError(
            "model.wavelet_scaling", f"unknown '{wavelet_scaling}' (choose from {', '.join(WAVELET_SCALINGS)})"
        )
    return PixelRepresentation()


def default_representation_name(shape: tuple[int, int, int], min_side: int) -> str:
    """``wavelet`` when every side is >= ``min_side`` voxels (``model.auto_wavelet_min_side``), ``pixel`` below."""
    return "wavelet" if min(int(s) for s in shape) >= int(min_side) else "pixel"
