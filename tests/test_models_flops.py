"""``DiffusionModule.training_flops``: the FLOPs Lightning's ``ThroughputMonitor`` turns into ``flops_per_sec``."""

from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from medsynth.models.diffusion_module import DiffusionModule

ROOT = Path(__file__).resolve().parents[1]


def tiny_module(representation: str, label_classes: int = 0, conditioning: dict | None = None) -> DiffusionModule:
    model = yaml.safe_load((ROOT / "conf/model/unet_tiny.yaml").read_text())
    model["representation"] = representation
    diffusion = yaml.safe_load((ROOT / "conf/diffusion/ddpm.yaml").read_text())
    geometry = {"shape": [16, 16, 16], "spacing": [1.0] * 3, "affine": torch.eye(4).tolist()}
    if label_classes:
        geometry["label_classes"] = label_classes
    return DiffusionModule(
        {"model": model, "diffusion": diffusion, "optim": {}, "trainer": {}, "data": {"batch_size": 2}, "seed": 0},
        geometry=geometry,
        conditioning=conditioning,
    )


@pytest.mark.parametrize(
    ("representation", "label_classes", "conditioning"),
    [("pixel", 0, None), ("wavelet", 0, None), ("wavelet", 2, None), ("pixel", 0, {"num_classes": 2})],
)
def test_training_flops_equal_a_counted_forward_and_backward_of_the_live_network(
    representation, label_classes, conditioning
):
    module = tiny_module(representation, label_classes, conditioning)
    flops = module.training_flops(3)
    assert all(p.grad is None for p in module.network.parameters())  # counted on a meta copy
    channels, *latent = module.representation.latent_shape(module.image_shape)
    x = torch.randn(3, channels, *latent)
    with FlopCounterMode(display=False) as counter:
        module.network(x, torch.zeros(3, dtype=torch.long)).sum().backward()
    assert flops == counter.get_total_flops() > 0
    assert module.training_flops(6) == 2 * flops  # linear in the batch


def test_flops_per_batch_is_set_when_training_starts():
    module = tiny_module("pixel")
    assert not hasattr(module, "flops_per_batch")  # ThroughputMonitor checks hasattr after the first batch
    module.on_train_start()
    assert module.flops_per_batch == module.training_flops(2)  # data.batch_size
