"""Opening Optuna storages from URLs, with clear errors and SQLite tuned for several writers.

Accepted URLs:

* ``sqlite:///path.db`` (default ``sqlite:///optileuk.db``), ``postgresql://...``,
  ``mysql+pymysql://...`` -- Optuna's RDB storage;
* ``journal:///path/to/file.log`` -- Optuna's journal file storage;
* ``redis://host:port[/db]`` -- Optuna's journal storage on Redis;
* ``memory`` -- an in-memory storage (tests and benchmarks; nothing survives the process).

Example:
    >>> st = open_storage("memory")
    >>> type(st).__name__
    'InMemoryStorage'
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage

from optileuk.errors import StorageError

DEFAULT_STORAGE = "sqlite:///optileuk.db"
_SQLITE_TIMEOUT_S = 120


def open_storage(url: str) -> BaseStorage:
    """Open (and create if needed) the storage at ``url``; raise :class:`StorageError` if unreachable."""
    url = url.strip()
    if url == "memory":
        return InMemoryStorage()
    if url.startswith("journal://"):
        return _journal_file(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _journal_redis(url)
    hint = _url_hint(url)
    if hint:
        raise StorageError(f"storage: '{redact(url)}' {hint}")
    if "://" not in url:
        raise StorageError(f"storage: '{url}' is not a storage URL (e.g. sqlite:///optileuk.db, "
                           "postgresql://user@host/db, journal:///path/file.log, redis://host:6379)")
    if url.startswith("sqlite:"):
        _check_sqlite_path(url)
        kwargs = {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}}
    else:
        kwargs = {"pool_pre_ping": True}
    try:
        storage = _rdb(url, kwargs)
    except ImportError as exc:
        raise StorageError(f"storage: the database driver for '{redact(url)}' is not installed ({exc}); "
                           "for PostgreSQL: pip install 'optileuk[postgres]'") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError(f"storage: cannot open '{redact(url)}': {reason}") from None
    if url.startswith("sqlite:"):
        _tune_sqlite(storage)
    return storage


def _url_hint(url: str) -> str | None:
    """The right form for the usual mistakes in a storage URL (None when it looks right)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+")[0] == "postgres":
        return f"must start with postgresql:// (SQLAlchemy's name for it): {redact('postgresql' + url[len('postgres'):])}"
    if sep and scheme == "sqlite" and not rest.startswith("/"):
        return (f"needs three slashes: sqlite:///{rest} (relative to the working folder) or "
                f"sqlite:////absolute/{rest}")
    if not sep and url.lower().endswith((".db", ".sqlite", ".sqlite3")):
        return f"is a file name, not a storage URL: use sqlite:///{url}"
    if not sep and url.lower().endswith((".log", ".jsonl")):
        return f"is a file name, not a storage URL: use journal:///{url}"
    return None


def _rdb(url: str, kwargs: dict, attempts: int = 6) -> RDBStorage:
    """Optuna's RDBStorage; retried when another process creates the same fresh schema at the same
    moment (compare's run processes starting together: both run CREATE TABLE, one hits a unique key)."""
    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs=kwargs)
        except sqlalchemy.exc.DBAPIError as exc:
            racing = any(w in str(exc.orig).lower() for w in ("already exists", "unique", "duplicate key"))
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _check_sqlite_path(url: str) -> None:
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:":
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise StorageError(f"storage: folder '{parent}' of '{url}' does not exist")
    if not os.access(parent, os.W_OK):
        raise StorageError(f"storage: folder '{parent}' of '{url}' is not writable")


def _tune_sqlite(storage: RDBStorage) -> None:
    """WAL journal + NORMAL sync: readers never block the writer; writers wait instead of failing."""

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - exercised through SQLite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_TIMEOUT_S * 1000}")
        cur.close()

    storage.engine.dispose()


def _journal_file(url: str) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    path = Path(url[len("journal://"):])  # journal:///abs/path.log or journal://relative.log
    parent = path.expanduser().resolve().parent
    if not parent.is_dir():
        raise StorageError(f"storage: folder '{parent}' of '{url}' does not exist")
    return JournalStorage(JournalFileBackend(str(path)))


def _journal_redis(url: str) -> BaseStorage:
    try:
        from optuna.storages.journal import JournalRedisBackend
        import redis  # noqa: F401
    except ImportError:
        raise StorageError("storage: Redis needs the 'redis' package: pip install 'optileuk[redis]'") from None
    try:
        with warnings.catch_warnings():  # "experimental" in Optuna; tested here against a real server
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend = JournalRedisBackend(url)
        backend._redis.ping()
    except Exception as exc:  # redis raises many connection error types
        raise StorageError(f"storage: cannot reach '{redact(url)}': {exc}") from None
    return JournalStorage(backend)


def redact(url: str) -> str:
    """The URL with its password hidden (``postgresql://u:***@host/db``): what optileuk prints,
    exports, stores in a study's attrs or writes into a report -- never the password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            cred = cred.split(":", 1)[0] + ":***"
        return f"{scheme}://{cred}@{host}"
    return url


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def open_existing(url: str):
    """Open a storage that must already exist (never create an empty SQLite file)."""
    if url.startswith("sqlite:///"):
        path = Path(url.split(":///", 1)[1].split("?", 1)[0])
        if not path.exists():
            raise StorageError(f"storage: '{url}' does not exist (no study has been run there yet)")
    return open_storage(url)
