"""A low-variance noise PSD for normalising searches: the analytic model times a smooth level
correction measured from the data.

A Welch PSD of one day (~11 median-averaged 4 h periodograms) scatters by ~30 % per bin; dividing
a periodogram by it would fatten the statistic's tail and turn noise into false candidates. The
SciRD model (Robson, Cornish & Liu 2019) fixes the spectral shape, the data fix the level: the
ratio measured / model is smoothed by a running median over many bins, which also ignores narrow
lines such as a bright binary.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from .noise import tdi_psd


def calibrated_model_psd(
    f: ArrayLike,
    measured: ArrayLike,
    channel: str,
    generation: str = "2.0",
    width_bins: int = 31,
) -> NDArray[np.float64]:
    """Model PSD of ``channel`` at ``f`` scaled by the running median of measured / model.

    Bins where the model is zero or the measurement is not finite (DC, TDI nulls) are filled from
    their neighbours before smoothing; the result is NaN only where the model itself is zero.
    """
    f = np.asarray(f, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    model = tdi_psd(f, channel, generation)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = measured / model
    good = np.isfinite(ratio) & (model > 0)
    if not good.any():
        raise ValueError("no frequency where both the measurement and the model are usable")
    idx = np.arange(f.size)
    ratio = np.interp(idx, idx[good], ratio[good])
    smooth = ndimage.median_filter(ratio, size=width_bins, mode="nearest")
    return np.where(model > 0, model * smooth, np.nan)
