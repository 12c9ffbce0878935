"""The memorisation check survives real-looking data: copies (exact, 30 dB noise, flipped, shifted by
one voxel) are flagged, independent brains from one template are not flagged as a group, and one
near-duplicate pair in the training set does not switch the check off. Thresholds from conf/."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.config import compose_stage
from medsynth.metrics import per_image

SHAPE = (32, 32, 32)


def _unit(volume: np.ndarray) -> np.ndarray:
    low, high = np.percentile(volume, [0.5, 99.5])
    return np.clip((volume - low) / (high - low), 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def brains():
    """32 demo brains (MNI template, random deformation, pose, bias field, noise): 24 train, 8 new."""
    from medsynth.data.brain import make_brain

    cfg = compose_stage("data_demo", []).brain
    volumes = [_unit(make_brain(SHAPE, np.random.default_rng([7, i]), cfg)[0]) for i in range(32)]
    return volumes[:24], volumes[24:]


def _check(train, queries):
    m = compose_stage("evaluate", ["real_dir=.", "synthetic_dir=.", "out_dir=."])
    mask = per_image.shared_foreground_mask(
        train, float(m.per_image.foreground_threshold), float(m.per_image.mask_min_fraction)
    )
    shift = int(m.memorisation.max_shift)
    threshold, record = per_image.memorisation_threshold(
        train,
        quantile=float(m.memorisation.quantile),
        distance_ratio=float(m.memorisation.distance_ratio),
        min_similarity=float(m.memorisation.min_similarity),
        mask=mask,
        max_shift=shift,
    )
    similarity, index = per_image.nearest_neighbour_correlation(queries, train, mask=mask, max_shift=shift)
    return similarity > threshold, index, threshold, record


def _copies(train):
    rng = np.random.default_rng(0)
    source = train[1]
    sigma = float(source.std()) * 10 ** (-30 / 20)  # SNR 30 dB: noise power = signal variance / 1000
    return [
        train[0].copy(),
        source + rng.normal(0.0, sigma, source.shape).astype(np.float32),
        np.flip(train[2], axis=0).copy(),  # left-right flip
        np.roll(train[3], 1, axis=1),  # one voxel along A
    ]


def test_copies_are_flagged_and_independent_brains_are_not(brains):
    train, independent = brains
    flagged, index, threshold, record = _check(train, _copies(train) + independent)
    assert flagged[:4].all() and list(index[:4]) == [0, 1, 2, 3], (threshold, record)
    assert flagged[4:].sum() <= 1, f"{flagged[4:].sum()} of 8 independent brains flagged (threshold {threshold})"
    assert record["quantile_similarity"] > 0.5  # template brains are alike: the calibration sees it


def test_one_near_duplicate_pair_in_training_does_not_disable_the_check(brains):
    train, independent = brains
    # 2 of 25 nearest-other similarities become ~1: above the 0.9 quantile, so it stays put
    near_duplicate = train[5] + np.random.default_rng(1).normal(0.0, 1e-4, SHAPE).astype(np.float32)
    flagged, _, threshold, _ = _check([*train, near_duplicate], _copies(train) + independent)
    assert flagged[:4].all(), threshold
    assert flagged[4:].sum() <= 1
