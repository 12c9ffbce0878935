"""Models: the Lightning diffusion module, networks, representations (pixel, wavelet), EMA."""
