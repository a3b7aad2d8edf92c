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
    """The dependencies' wheels for CPython 3.11 (manylinux) and the build backend, cached by
    the pyproject's hash (the image builds the project itself from its sources)."""
    deps = home() / "images" / f"wheels-{_dependency_key()}"
    if (deps / ".complete").exists():
        return deps
    say(f"fetching the dependencies' wheels for Python {PYTHON} into {deps} (once)")
    deps.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory() as project:
        # The project's wheel only for its metadata: the requirements as pip resolves them.
        _run(
            [*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", project, str(ROOT)],
            "building the project's wheel",
        )
        (wheel,) = Path(project).glob("lisa_choreo-*.whl")
        requirements = requirements_for_target(wheel)
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
            *requirements,
            # The project's build backend, for the install from the sources.
            "setuptools>=75",
        ],
        "downloading the wheels",
    )
    (deps / ".complete").write_text("")
    return deps


def content_tag(base_id: str, wheels: list[Path]) -> str:
    """``IMAGE_REPO:<hash>`` of what goes into the image: the Dockerfile, the pyproject, every
    source file (path and bytes), the wheels' names (a wheel's name carries its version and
    tags; the wheelhouse is never changed once complete) and the base image's id."""
    h = hashlib.sha256(base_id.encode())
    for name in sorted(p.name for p in wheels):
        h.update(name.encode() + b"\n")
    sources = [ROOT / "Dockerfile", ROOT / "pyproject.toml", ROOT / "README.md"]
    for d in ("shared", "services"):
        sources += [
            p
            for p in (ROOT / d).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    for path in sorted(sources):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_REPO}:{h.hexdigest()[:16]}"


def build_image(say=lambda text: None) -> str:
    """``localhost/lisa-choreo:<content hash>``, built unless that tag exists already."""
    if not podman_available():
        raise StackError("podman not found (apt-get install -y podman runc)")
    base = base_image(say)
    files = sorted(wheelhouse(say).glob("*.whl"))
    dockerfile = ROOT / "Dockerfile"
    tag = content_tag(image_id(base), files)
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
    prune(keep=tag)
    return tag


def prune(keep: str) -> None:
    """Remove the older ``IMAGE_REPO`` tags no container uses and the build stages' images
    (each ~0.6 GB)."""
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    old = [ref for ref in listed if ref != keep and ref.startswith(IMAGE_REPO + ":")]
    for ref in old:  # one by one, never forced: an image a container still uses stays
        subprocess.run(["podman", "rmi", ref], capture_output=True, check=False)
    subprocess.run(
        ["podman", "image", "prune", "--force", "--filter", "label=org.lisa-choreo.stage=build"],
        capture_output=True,
        check=False,
    )


if __name__ == "__main__":  # python -m lisa_choreo.localstack.containers: build, print the tag
    print(build_image(lambda text: print(text, file=sys.stderr)))
