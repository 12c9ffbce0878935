"""Shared file helpers: atomic writes, NIfTI reading and writing."""

from medsynth.io.atomic import atomic_path, atomic_write_text

__all__ = ["atomic_path", "atomic_write_text"]
