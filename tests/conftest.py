"""Shared fixtures: temporary storages, study-file writers, the real console script."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)

# The Ctrl+C tests send SIGINT to the processes they start. A pytest started in the background by a
# shell without job control inherits SIGINT ignored, and a process inherits an ignored signal across
# exec (Python then never raises KeyboardInterrupt): give it a handler, which exec resets to default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


def _service_missing(what: str, reason: str):
    """Skip on a user's machine without the server; fail in CI (OPTILEUK_REQUIRE_SERVICES=1)."""
    if os.environ.get("OPTILEUK_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required here (OPTILEUK_REQUIRE_SERVICES=1) but unreachable: {reason}")
    pytest.skip(f"{what} not reachable: {reason}")


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    import uuid

    try:
        import psycopg
    except ImportError as exc:
        _service_missing("PostgreSQL driver", str(exc))
    base = os.environ.get("OPTILEUK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"optileuk_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as exc:
        _service_missing("PostgreSQL", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    yield base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def redis_url():
    """A Redis database number for one test (flushed before and after)."""
    try:
        import redis
    except ImportError as exc:
        _service_missing("Redis client", str(exc))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # tests side by side (pytest -n): a database each
    url = os.environ.get("OPTILEUK_TEST_REDIS", f"redis://127.0.0.1:6379/{13 - int(worker[2:] or 0) % 13}")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.flushdb()
    except Exception as exc:
        _service_missing("Redis", str(exc))
    yield url
    client.flushdb()


def chromium() -> str:
    """Debian's Chromium for the HTML tests (skips on a user's machine without it; fails in CI)."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        _service_missing("Chromium (apt-get install chromium)", "no chromium on PATH")
    return exe


def dump_dom(page: Path, profile: Path, budget_ms: int = 30000) -> str:
    """The DOM of ``page`` once headless Chromium has run its scripts."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180).stdout
