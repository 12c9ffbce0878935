"""medsynth: synthetic 3D medical imaging with diffusion models, automatic metrics and reader studies."""

__version__ = "0.1.0"
