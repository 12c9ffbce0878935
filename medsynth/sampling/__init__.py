"""Sampling: synthetic NIfTI datasets from a trained checkpoint (``medsynth sample``).

``generate_volumes(bundle, seeds, ...)`` is the in-memory API used by training previews; the
``medsynth sample`` stage (``cli.py``) adds export, manifests, resume and multi-process shards.
"""

from medsynth.sampling.generate import generate_volumes, sample_seed

__all__ = ["generate_volumes", "sample_seed"]
