"""Shared fixtures: temporary storages, study-file writers, the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tests use their own dataset cache, never the user's ~/.cache/optileuk."""
    old = os.environ.get("OPTILEUK_CACHE")
    os.environ["OPTILEUK_CACHE"] = str(tmp_path_factory.mktemp("optileuk-cache"))
    yield
    if old is None:
        os.environ.pop("OPTILEUK_CACHE", None)
    else:
        os.environ["OPTILEUK_CACHE"] = old


BCCD = ROOT.parent / "shared" / "data" / "bccd_cells"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory (the default storage optileuk.db would land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def box_space(workdir):
    lines = ["parameters:"] + [f"  x{i}: {{type: float, low: -5.12, high: 5.12}}" for i in range(4)]
    return write(workdir / "spaces" / "box4.yaml", "\n".join(lines) + "\n")


def optileuk_exe() -> str:
    exe = shutil.which("optileuk", path=str(Path(sys.executable).parent)) or shutil.which("optileuk")
    assert exe, "the optileuk console script is not installed (pip install -e .)"
    return exe


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console script, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([optileuk_exe(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env, stdin=subprocess.DEVNULL)
