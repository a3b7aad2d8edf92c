"""The service image, built with podman where no container registry can be reached.

The Dockerfile takes its base image as a build argument (``BASE_IMAGE``): elsewhere it is the
public ``python`` image; here it is a Debian bookworm made locally, because no registry answers:

1. **Base** (``base_image``): ``debootstrap --variant=minbase`` of bookworm from the mirror apt is
   already configured with (read from ``/etc/apt/sources.list*``, never written in the repo),
   with ``python3`` and ``python3-venv`` included (bookworm's Python is 3.11; the services run on
   it, the simulators are 3.12-only and not installed), imported with ``podman import`` as
   ``localhost/lisa-choreo-base:bookworm``. About a minute, once per machine (podman's store).
2. **Wheels** (``wheelhouse``): the project's wheel and every dependency's, for CPython 3.11 on
   manylinux, fetched by the host's pip (the ordinary client of the package index) into
   ``$LISA_CHOREO_HOME/images/wheels-<hash of the dependency list>``; the image build then runs
   with ``--network none`` and ``PIP_NO_INDEX=1``: nothing in the build reaches a network.
3. **Image** (``build_image``): ``podman build`` of a staged context (the Dockerfile, the wheels),
   tagged ``localhost/lisa-choreo:<content hash>``: the hash covers the Dockerfile, the wheels
   and the base image's id, so an image whose tag exists is reused without building.

podman runs with the ``runc`` runtime (crun refuses this machine's hybrid cgroups) and explicit
ulimits (the defaults are refused here): ``PODMAN`` and ``ULIMITS``.
"""

from __future__ import annotations

import email.parser
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from choreo.settings import home
from lisa_choreo.localstack.brokers import StackError

ROOT = Path(__file__).resolve().parents[3]
BASE_IMAGE = "localhost/lisa-choreo-base:bookworm"
IMAGE_REPO = "localhost/lisa-choreo"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
PYTHON = "3.11"  # bookworm's
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PODMAN = ("podman", "--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
SOURCE_LISTS = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-8:]
        raise StackError(f"{what} failed ({result.returncode}): " + " | ".join(tail))
    return result


def podman_available() -> bool:
    return shutil.which("podman") is not None


def image_exists(ref: str) -> bool:
    return subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0


def image_id(ref: str) -> str:
    return _run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", ref], "inspect"
    ).stdout.strip()


def apt_mirror(lists: tuple[Path, ...] = SOURCE_LISTS) -> str:
    """The Debian archive apt uses for the main suite (not security, not a third party): the
    ``deb URI SUITE`` lines of ``sources.list`` and the deb822 ``.sources`` stanzas."""
    files: list[Path] = []
    for path in lists:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (
                        line.partition(":") for line in stanza.splitlines() if ":" in line
                    )
                    if not k.startswith("#")
                )
                if (
                    SUITE in fields.get("suites", "").split()
                    and "deb" in fields.get("types", "").split()
                ):
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                parts = [p for p in parts if not p.startswith("[")]
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1]
    raise StackError(f"no Debian {SUITE} archive in apt's sources ({', '.join(map(str, lists))})")


def base_image(say=lambda text: None) -> str:
    """``BASE_IMAGE``, made with debootstrap and ``podman import`` unless podman has it."""
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        raise StackError("debootstrap not found (apt-get install -y debootstrap): no base image")
    mirror = apt_mirror()
    say(f"making the base image {BASE_IMAGE} with debootstrap from apt's mirror (once, ~1 min)")
    work = home() / "images"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            "debootstrap",
        )
        # apt's lists and caches are not needed in an image that never runs apt.
        for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for p in (rootfs / sub).glob("*"):
                if p.is_file():
                    p.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            _run(["podman", "import", "-", BASE_IMAGE], "podman import", stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
    return BASE_IMAGE


def requirements_for_target(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` that apply on the image's Python. pip's ``download
    --python-version`` picks wheels for that version but evaluates markers with the running
    interpreter (3.12 here), which would ask for the 3.12-only simulators: the markers are
    evaluated here, for the target, and the requirements passed without them."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(zf.read(name).decode())
    target = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.2", "extra": ""}
    out = []
    for line in metadata.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(target):
            req.marker = None
            out.append(str(req))
    return out


def _dependency_key() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]


def wheelhouse(say=lambda text: None) -> Path:
    """The project's wheel and its dependencies' wheels for CPython 3.11 (manylinux), cached by
    the pyproject's hash; the project wheel is rebuilt every call (the sources change)."""
    target = home() / "images" / f"wheels-{_dependency_key()}"
    project = target / "project"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    _run(
        [*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(project), str(ROOT)],
        "building the project's wheel",
    )
    (wheel,) = project.glob("lisa_choreo-*.whl")
    deps = target / "deps"
    if not (deps / ".complete").exists():
        say(f"fetching the dependencies' wheels for Python {PYTHON} into {deps} (once)")
        deps.mkdir(parents=True, exist_ok=True)
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        _run(
            [
                *pip,
                "download",
                "--quiet",
                "--only-binary=:all:",
                "--python-version",
                PYTHON,
                "--implementation",
                "cp",
                *platforms,
                "--dest",
                str(deps),
                *requirements_for_target(wheel),
                # The project's build backend, for an install from the sources.
                "setuptools>=75",
            ],
            "downloading the wheels",
        )
        (deps / ".complete").write_text("")
    return target


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths, key=lambda p: p.name):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def build_image(say=lambda text: None) -> str:
    """``localhost/lisa-choreo:<content hash>``, built unless that tag exists already."""
    if not podman_available():
        raise StackError("podman not found (apt-get install -y podman runc)")
    base = base_image(say)
    wheels = wheelhouse(say)
    files = sorted(p for p in wheels.rglob("*.whl"))
    dockerfile = ROOT / "Dockerfile"
    # The project wheel's bytes carry timestamps; its name and the sources it came from do not:
    # hash the sources the wheel is made of instead.
    sources = [
        p
        for d in ("shared", "services")
        for p in (ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    deps = [p for p in files if p.parent.name == "deps"]
    tag = f"{IMAGE_REPO}:" + _digest(
        [dockerfile, ROOT / "pyproject.toml", *deps, *sources],
        image_id(base) + "".join(str(p.relative_to(ROOT)) for p in sorted(sources)),
    )
    if image_exists(tag):
        return tag
    say(f"building {tag} with podman (offline, from {base})")
    work = home() / "images"
    with tempfile.TemporaryDirectory(dir=work, prefix="context-") as tmp:
        context = Path(tmp)
        shutil.copy2(dockerfile, context / "Dockerfile")
        shutil.copy2(ROOT / "pyproject.toml", context / "pyproject.toml")
        shutil.copy2(ROOT / "README.md", context / "README.md")
        for d in ("shared", "services"):
            shutil.copytree(
                ROOT / d, context / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        (context / "wheels").mkdir()
        for p in files:
            shutil.copy2(p, context / "wheels" / p.name)
        t0 = time.monotonic()
        _run(
            [
                *PODMAN,
                "build",
                "--format",
                "docker",  # keeps HEALTHCHECK (the OCI format has no field for it)
                "--network",
                "none",
                *ULIMITS,
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--build-arg",
                "PIP_NO_INDEX=1",
                "--tag",
                tag,
                str(context),
            ],
            "podman build",
        )
        (work / "last-build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
    return tag
