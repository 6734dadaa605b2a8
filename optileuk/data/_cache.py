"""On-disk cache of datasets, keyed by their config (folder: ``$OPTILEUK_CACHE`` or ~/.cache/optileuk)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optileuk.data._dataset import Dataset

CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("OPTILEUK_CACHE") or Path.home() / ".cache" / "optileuk").expanduser()


def key_of(data: Any) -> str:
    text = json.dumps({"v": CACHE_VERSION, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached(kind: str, key: Any, build: Callable[[], Dataset], *, enabled: bool = True) -> Dataset:
    """Load the dataset cached under ``key`` or build it and store it (atomically)."""
    if not enabled or os.environ.get("OPTILEUK_CACHE") == "off":
        return build()
    path = cache_dir() / f"{kind}-{key_of(key)}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # a truncated or stale cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    ds = build()
    _store(path, lambda f: pickle.dump(ds, f, protocol=pickle.HIGHEST_PROTOCOL))
    return ds


def _store(path: Path, write: Callable) -> None:
    """Write a cache file atomically (``write(file)``); a read-only cache folder only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError:
        pass


def cached_arrays(kind: str, key: Any, build: Callable[[], np.ndarray]) -> np.ndarray:
    """One numpy array cached under ``key`` as ``.npz``, loaded with ``allow_pickle=False`` (a cache
    file can never run code); a file that does not load is rebuilt."""
    if os.environ.get("OPTILEUK_CACHE") == "off":
        return build()
    path = cache_dir() / f"{kind}-{key_of(key)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["array"]
        except Exception:  # truncated, stale or not ours: rebuilt, never trusted
            path.unlink(missing_ok=True)
    array = np.asarray(build())
    _store(path, lambda f: np.savez_compressed(f, array=array))
    return array
