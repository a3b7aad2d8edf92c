"""condition: raw X/Y/Z segments -> A/E/T with a quality mask, PSDs and whitened data."""
