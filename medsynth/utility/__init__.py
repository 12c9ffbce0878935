"""``medsynth utility``: downstream segmentation/classification on real, synthetic and real + synthetic data."""
