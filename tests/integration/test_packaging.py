"""The wheel stands alone: a plain ``pip install .`` (not editable) into a fresh venv runs the
demo. Nothing may depend on the checkout (no ``parents[N]`` paths, data through
importlib.resources, no generic top-level import name)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's committed-or-staged files copied out (the build leaves the checkout
    untouched), installed into a new venv with pip; returns its bin folder."""
    work = tmp_path_factory.mktemp("pkg")
    source = work / "src"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    wheel = subprocess.run(
        [str(env_dir / "bin" / "pip"), "wheel", "--no-deps", "-q", "-w", str(work), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert wheel.returncode == 0, wheel.stderr
    return env_dir / "bin"


def test_the_wheel_has_only_project_named_packages(installed: Path) -> None:
    [wheel] = installed.parent.parent.glob("lisa_choreo-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {t for t in tops if not t.endswith(".dist-info")}
    assert packages == {"choreo", "lisa_science", "lisa_pipeline", "lisa_services", "lisa_choreo"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "lisa_choreo/localstack/resources/kafka/pom.xml" in names
    assert "lisa_science/data/verification_binaries_kupfer2018.csv" in names


def test_a_plain_install_runs_the_demo(installed: Path, kafka, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed}{os.pathsep}{env.get('PATH', '')}"
    probe = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import lisa_choreo, lisa_services; "
            "print(lisa_choreo.__file__, lisa_services.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert str(ROOT) not in probe.stdout  # the installed copy, not the checkout
    demo = subprocess.run(
        [str(installed / "lisa-choreo"), "demo", "--days", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "5. the catalogue:" in demo.stdout
    assert "AM CVn" in demo.stdout  # the brightest verification binary, found in 3 days
    assert sys.executable not in demo.stderr
