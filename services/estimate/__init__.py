"""estimate: candidates -> frequency, amplitude and phase with Fisher uncertainties."""
