"""``lisa-choreo process`` on the user's own files, in both layouts it reads, end to end.

The files are written here with h5py directly, not with ``lisa_science.ldc.write_ldc``: an
independent writer following the LDC documentation (``obs/tdi``, compound t, X, Y, Z of shape
(N, 1) with attributes ``coord``, ``dt``, ``t0``, ``units``) and the Radler layout
(``H5LISA/PreProcess/TDIdata``, a plain (N, 4) array of t, X, Y, Z), so a shared misreading of the
format cannot pass. The data are analytic SciRD noise with strong sinusoids added in X whose
frequencies are known here; the catalogue must find each within one frequency bin (1/day for daily
segments) and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from lisa_science.noise import tdi_psd
from lisa_science.simulate import analytic_tdi_noise

pytestmark = pytest.mark.kafka

DAY = 86_400.0
DT = 5.0
DAYS = 3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PICTURES = ("spectrum.png", "quality.png", "catalogue.png", "latency.png")


def tdi_with_sinusoids(
    days: float, freqs_hz: list[float], snr_per_day: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """t, X, Y, Z: analytic noise, plus in X a sinusoid per frequency whose single-day SNR in X
    is ``snr_per_day`` (amplitude sqrt(S_X(f) / T) SNR, the optimal SNR of a sinusoid of amplitude
    a over T in noise of one-sided PSD S being a sqrt(T / S))."""
    n = round(days * DAY / DT)
    t = np.arange(n) * DT
    x, y, z = analytic_tdi_noise(n, DT, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    for f in freqs_hz:
        amplitude = snr_per_day * np.sqrt(float(tdi_psd(f, "X")) / DAY)
        x = x + amplitude * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return t, x, y, z


def write_ldc_layout(path: Path, t, x, y, z) -> Path:
    rows = np.zeros((t.size, 1), dtype=[("t", "<f8"), ("X", "<f8"), ("Y", "<f8"), ("Z", "<f8")])
    rows["t"][:, 0], rows["X"][:, 0], rows["Y"][:, 0], rows["Z"][:, 0] = t, x, y, z
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("obs/tdi", data=rows)
        ds.attrs["coord"] = "t"
        ds.attrs["dt"] = DT
        ds.attrs["t0"] = float(t[0])
        ds.attrs["units"] = "fractional frequency"
    return path


def write_radler_layout(path: Path, t, x, y, z) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("H5LISA/PreProcess/TDIdata", data=np.column_stack([t, x, y, z]))
    return path


def process(tmp_path: Path, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LISA_KAFKA_TOPIC_PREFIX", None)
    return subprocess.run(
        [sys.executable, "-m", "lisa_choreo.cli", "process", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=tmp_path,
        env=env,
        check=False,
    )


def services_of(marker: str) -> list[int]:
    """Pids of ``lisa_choreo.cli run`` processes whose environment mentions ``marker`` (the run's
    topic prefix or folder), found in /proc: a service the job left behind would have been
    reparented, no longer our child, and other runs on this machine have other markers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"lisa_choreo.cli" in cmdline and b"run" in cmdline and marker.encode() in environ:
            pids.append(int(entry.name))
    return pids


def catalogue_frequencies(stdout: str) -> list[float]:
    """The frequencies of the printed catalogue (section "the catalogue:")."""
    section = stdout.split("the catalogue:", 1)[1]
    return [float(m.group(1)) for m in re.finditer(r"^GB\S+\s+([0-9.]+e[-+]\d+)\s", section, re.M)]


def assert_valid_pngs(folder: Path) -> None:
    for name in PICTURES:
        path = folder / name
        assert path.exists(), f"{name} not drawn"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as image:
            width, height = image.size
            image.verify()
        assert width >= 600, (name, width, height)
        assert height >= 400, (name, width, height)


@pytest.mark.parametrize(
    ("layout", "writer", "freqs_hz"),
    [
        ("ldc", write_ldc_layout, [3.1e-3, 7.3e-3]),
        ("radler", write_radler_layout, [2.45e-3, 11.2e-3]),
    ],
)
def test_process_catalogues_the_injected_sources_and_draws_every_picture(
    kafka, tmp_path: Path, layout: str, writer, freqs_hz: list[float]
):
    data = writer(tmp_path / f"{layout}.h5", *tdi_with_sinusoids(DAYS, freqs_hz, 25.0, seed=7))
    out = tmp_path / "run"
    result = process(tmp_path, str(data), "--out", str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    record = json.loads((out / "run.json").read_text())
    assert record["expected"] == DAYS
    assert record["outcome"]["settled"] is True
    assert not services_of(f"LISA_KAFKA_TOPIC_PREFIX={record['topic_prefix']}"), "left running"
    assert not services_of(str(out)), "a service of the run is still running"

    found = catalogue_frequencies(result.stdout)
    bin_hz = 1 / DAY
    for f in freqs_hz:
        assert any(abs(g - f) <= bin_hz for g in found), (f, found)
    assert all(any(abs(g - f) <= bin_hz for f in freqs_hz) for g in found), found
    assert "dead letters: none" in result.stdout
    assert f"catalogued {DAYS}/{DAYS}" in result.stdout  # the plain progress lines
    assert_valid_pngs(out / "products")
    for name in PICTURES:
        assert str(out / "products" / name) in result.stdout
    assert (out / "products" / "catalog.csv").exists()

    # the pictures again from the run's record: same files, redrawn
    before = {name: (out / "products" / name).stat().st_mtime_ns for name in PICTURES}
    redraw = subprocess.run(
        [sys.executable, "-m", "lisa_choreo.cli", "plot", str(out), "--out", str(tmp_path / "re")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert redraw.returncode == 0, redraw.stderr
    assert f"{DAYS} segment(s) stacked, {len(found)} source(s)" in redraw.stdout
    assert_valid_pngs(tmp_path / "re")
    assert before == {name: (out / "products" / name).stat().st_mtime_ns for name in PICTURES}


def test_a_bad_file_is_refused_by_name_with_its_reason_and_nothing_starts(kafka, tmp_path: Path):
    good = write_ldc_layout(tmp_path / "good.h5", *tdi_with_sinusoids(1, [3e-3], 25.0, seed=3))
    bad = tmp_path / "irregular.h5"
    t, x, y, z = tdi_with_sinusoids(1, [], 0.0, seed=4)
    t[1000:] += 2.5  # a jump in time: not a regular grid
    write_radler_layout(bad, t, x, y, z)
    result = process(tmp_path, str(good), str(bad), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "irregular.h5" in result.stderr
    assert "irregular time" in result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing was started" in result.stdout
    assert not (tmp_path / "run" / "run.json").exists()
    assert not services_of(str(tmp_path))

    missing = process(tmp_path, str(tmp_path / "absent.h5"))
    assert missing.returncode == 2
    assert "absent.h5: no such file" in missing.stderr
