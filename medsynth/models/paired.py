"""Paired image + label models: the label map as one-hot channels, generated (joint) or given (condition).

A paired model diffuses C = 1 + K channels: the image in [-1, 1] and K one-hot label channels
mapped to {-1, +1} (2 * one_hot - 1, so every channel shares the image's [-1, 1] range and the
scheduler's ``clip_sample``). The pixel or wavelet representation is applied to each channel
alone (:class:`ChannelwiseRepresentation`); at export the image is channel 0 and the label map
the argmax of channels 1..K (:func:`split_image_label`). The network is the same UNet with
1 + K in/out channels, so training, EMA, samplers, seeds and resume work unchanged.

Mask-conditioned generation (``label_mode="condition"``): the same one-hot label channels are
*inputs* of the denoiser, concatenated to the noisy image at every step, and only the image is
diffused (in_channels c (1 + K), out_channels c, c the representation's channels per volume
channel). Training encodes the (1 + K)-channel pair and splits it (:func:`split_condition`);
sampling encodes the user's label maps the same way (:func:`mask_condition`). Why not MONAI
``ControlNet``: it needs a separately trained base model (whose encoder it copies and keeps
frozen) and a second training stage; extra input channels train from scratch in the same loop,
on small datasets, and cost one wider first convolution (cheapest on a CPU).

Joint diffusion vs a mask-conditioned model: it needs no second network or
user masks, and image and label come from one denoising trajectory, so they agree by
construction (the choice MAISI makes for paired CT is ControlNet on user masks; that serves a
different use, "make an image for this mask").
"""

from __future__ import annotations

import torch

from medsynth.models.representation import LEGACY_DETAIL_GAIN, LEGACY_WAVELET_SCALING, build_representation


class ChannelwiseRepresentation:
    """A single-channel representation applied to each of ``channels`` volume channels.

    ``encode``: (B, C, D, H, W) -> (B, C * c, d, h, w), channel blocks in input order; ``decode``
    inverts it. ``c``, d, h, w are the base representation's (pixel: 1 and D, H, W; wavelet: 8 and half).
    """

    def __init__(self, base, channels: int):
        self.base = base
        self.channels = int(channels)
        self.name = base.name
        self.downsample = base.downsample

    def encode(self, volume: torch.Tensor) -> torch.Tensor:
        if volume.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {tuple(volume.shape)}")
        return torch.cat([self.base.encode(volume[:, c : c + 1]) for c in range(self.channels)], dim=1)

    def decode(self, coefficients: torch.Tensor) -> torch.Tensor:
        per = coefficients.shape[1] // self.channels
        blocks = [coefficients[:, c * per : (c + 1) * per] for c in range(self.channels)]
        return torch.cat([self.base.decode(block) for block in blocks], dim=1)

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        c, *spatial = self.base.latent_shape(image_shape)
        return (c * self.channels, *spatial)

    def clip_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each (C * c,): the base representation's bounds repeated per volume channel."""
        low, high = self.base.clip_bounds()
        return low.repeat(self.channels), high.repeat(self.channels)


def build_paired_representation(
    name: str,
    label_classes: int = 0,
    wavelet_scaling: str = LEGACY_WAVELET_SCALING,
    detail_gain: float = LEGACY_DETAIL_GAIN,
):
    """The ``name`` representation (``wavelet_scaling``, ``detail_gain``: see
    :mod:`medsynth.models.representation`); with ``label_classes`` K > 0, one over 1 + K channels."""
    base = build_representation(name, wavelet_scaling, detail_gain)
    return ChannelwiseRepresentation(base, 1 + int(label_classes)) if int(label_classes) > 0 else base


#: ``data.label_map_mode`` values: label channels generated with the image, or given as conditioning
LABEL_MODES = ("joint", "condition")


def build_generation_representation(
    name: str,
    label_classes: int = 0,
    label_mode: str = "joint",
    wavelet_scaling: str = LEGACY_WAVELET_SCALING,
    detail_gain: float = LEGACY_DETAIL_GAIN,
):
    """The representation of what the sampler generates: 1 + K channels (joint) or the image alone (condition)."""
    return build_paired_representation(
        name, label_classes if label_mode == "joint" else 0, wavelet_scaling, detail_gain
    )


def split_condition(coefficients: torch.Tensor, label_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, c (1 + K), d, h, w) encoded pair -> (image block (B, c, ...), label block (B, c K, ...))."""
    per = coefficients.shape[1] // (1 + int(label_classes))
    return coefficients[:, :per], coefficients[:, per:]


def mask_condition(base, masks: torch.Tensor, label_classes: int) -> torch.Tensor:
    """(B, D, H, W) integer label maps -> (B, c K, d, h, w) conditioning, encoded as in training.

    ``base`` is the single-channel representation (the one a conditioned bundle samples in).
    """
    channels = label_channels(masks[:, None], label_classes)
    return ChannelwiseRepresentation(base, int(label_classes)).encode(channels)


def label_channels(label: torch.Tensor, label_classes: int) -> torch.Tensor:
    """(B, 1, D, H, W) integer label map -> (B, K, D, H, W) float one-hot in {-1, +1}."""
    one_hot = torch.nn.functional.one_hot(label[:, 0].long(), int(label_classes))
    return one_hot.movedim(-1, 1).float() * 2.0 - 1.0


def split_image_label(volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1 + K, D, H, W) decoded pair -> (image (B, 1, D, H, W), label (B, D, H, W) uint8 argmax of 1..K)."""
    return volumes[:, :1], volumes[:, 1:].argmax(dim=1).to(torch.uint8)
