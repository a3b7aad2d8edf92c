"""The layers import one way only (ARCHITECTURE.md), checked by import-linter on every run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(pythonpath: list[Path] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("choreo/events.py", "import lisa_pipeline.topics"),  # runtime -> contract
        (
            "lisa_pipeline/topics.py",
            "import lisa_services.condition.service",
        ),  # contract -> service
        ("lisa_services/estimate/service.py", "import lisa_services.gb_search.service"),  # sideways
        ("lisa_services/ingest/files.py", "import lisa_choreo.registry"),  # service -> tools
        ("lisa_science/psd.py", "import aiokafka"),  # kernel -> Kafka
    ],
)
def test_a_deliberate_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, upward: str
) -> None:
    """A copy of the tree with one bad import added: the linter must refuse it."""
    shutil.copytree(ROOT / "shared", tmp_path, dirs_exist_ok=True, ignore=_pycache)
    shutil.copytree(ROOT / "services", tmp_path / "lisa_services", ignore=_pycache)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # deliberate\n")
    result = lint([tmp_path])
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert "deliberate" not in result.stderr


def test_no_service_or_contract_module_names_the_tools() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+lisa_choreo\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in (
            ROOT / "services",
            ROOT / "shared" / "lisa_pipeline",
            ROOT / "shared" / "choreo",
        )
        for path in folder.rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def _pycache(_: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__"]
