"""docs/plugins.md: its two example packages, written from the page, installed with pip and run."""

from __future__ import annotations

import re
import subprocess
import sys

import optuna
import pytest
import yaml

from conftest import ROOT, run_cli

DOC = ROOT / "docs" / "plugins.md"


def _packages() -> list[dict[str, str]]:
    """The files the page shows, grouped into packages (each starts with its pyproject.toml)."""
    text = DOC.read_text()
    packages: list[dict[str, str]] = []
    for path, body in re.findall(r"^`([\w./]+)`:\n\n```\w*\n(.*?)^```", text, flags=re.M | re.S):
        if path == "pyproject.toml":
            packages.append({})
        packages[-1][path] = body
    return packages


def _study_blocks() -> list[str]:
    return [b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S) if "objective:" in b]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Both example packages, installed by pip into one folder put on PYTHONPATH."""
    root = tmp_path_factory.mktemp("plugins")
    target = root / "site"
    for i, files in enumerate(_packages()):
        pkg = root / f"pkg{i}"
        for path, body in files.items():
            (pkg / path).parent.mkdir(parents=True, exist_ok=True)
            (pkg / path).write_text(body)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--no-index", "--target", str(target), str(pkg)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return {"PYTHONPATH": str(target)}


def test_the_page_shows_two_complete_packages():
    packages = _packages()
    assert [sorted(p) for p in packages] == [["optileuk_es/__init__.py", "pyproject.toml"],
                                            ["optileuk_threshold/__init__.py", "pyproject.toml"]]


def test_installed_plugins_are_listed_and_run_a_study(site, workdir):
    r = run_cli("optimizers", cwd=workdir, env=site)
    assert r.returncode == 0 and re.search(r"\bes\b.*evolution strategy", r.stdout), r.stdout + r.stderr
    study = yaml.safe_load(_study_blocks()[-1])
    (workdir / "s.yaml").write_text(yaml.safe_dump(study))
    r = run_cli("run", "s.yaml", cwd=workdir, env=site)
    assert r.returncode == 0, r.stderr
    trials = optuna.load_study(study_name="threshold-es", storage=f"sqlite:///{workdir}/optileuk.db").trials
    assert len(trials) == 30 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    first, rest = min(t.value for t in trials[:6]), min(t.value for t in trials[6:])
    assert rest <= first and 0 < trials[0].user_attrs["dice"] <= 1  # it searches, and Dice is recorded
    # the plug-ins' configs are checked like the built-ins'
    (workdir / "bad.yaml").write_text(yaml.safe_dump({**study, "optimizer": {"name": "es", "sigma": -1}}))
    r = run_cli("run", "bad.yaml", cwd=workdir, env=site)
    assert r.returncode == 2 and "optimizer.sigma must be > 0.0, got -1" in r.stderr, r.stderr
    # and the state is data: a re-run with a larger budget continues
    r = run_cli("run", "s.yaml", "--trials", "36", cwd=workdir, env=site)
    assert r.returncode == 0 and "6 evaluated" in r.stdout, r.stdout + r.stderr
