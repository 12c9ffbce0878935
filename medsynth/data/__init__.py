"""Data stage: discovery, preprocessing, demo datasets and the training DataModule."""
