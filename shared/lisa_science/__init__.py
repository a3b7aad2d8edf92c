"""Pure science kernels of lisa-choreo: LISA TDI data, SciRD noise, and monochromatic-source
search, estimation and stacking.

Modules (one job each): ``noise`` (analytic PSDs), ``ldc`` (LDC HDF5 I/O, the only I/O),
``segments`` (segmentation, XYZ <-> AET), ``quality`` (gap/glitch masks), ``psd`` (Welch PSD,
band ratios), ``simulate`` (Gaussian TDI noise), ``whiten``, ``search`` (A+E periodogram),
``estimate`` (sinusoid fit), ``stacking`` (per-bin incoherent sums). Functions take and return
numpy arrays and have no side effects.
"""

__all__ = [
    "estimate",
    "ldc",
    "noise",
    "psd",
    "quality",
    "search",
    "segments",
    "simulate",
    "stacking",
    "whiten",
]
