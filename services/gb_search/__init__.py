"""gb-search: conditioned segments -> Galactic-binary candidates (A+E whitened periodogram)."""
