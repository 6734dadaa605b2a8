"""On-disk cache of datasets and features, keyed by their config (folder: ``$OPTILEUK_CACHE`` or
~/.cache/optileuk; ``OPTILEUK_CACHE=off`` turns it off).

Entries are data, never pickles: ``.npz`` files written by :mod:`optileuk.plain` and read with
``allow_pickle=False``. A file in the cache that does not read as optileuk's data (a pickle, a
file from an unknown source) is refused with a message naming it; nothing runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optileuk import plain
from optileuk.data._dataset import Dataset
from optileuk.errors import DataError

CACHE_VERSION = 2  # 2: data (.npz) instead of pickles


def cache_dir() -> Path:
    return Path(os.environ.get("OPTILEUK_CACHE") or Path.home() / ".cache" / "optileuk").expanduser()


def key_of(data: Any) -> str:
    text = json.dumps({"v": CACHE_VERSION, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read(path: Path) -> Any:
    try:
        return plain.load(path)
    except plain.NotData as exc:
        raise DataError(f"cache: {exc}. optileuk never loads pickles or files it did not write; delete the "
                        f"file (or run with OPTILEUK_CACHE=off) and it is rebuilt") from None


def cached(kind: str, key: Any, build: Callable[[], Any], *, enabled: bool = True) -> Any:
    """The value cached under ``key`` (a :class:`Dataset`, arrays, lists/tuples of arrays), or
    ``build()`` stored atomically."""
    if not enabled or os.environ.get("OPTILEUK_CACHE") == "off":
        return build()
    path = cache_dir() / f"{kind}-{key_of(key)}.npz"
    if path.exists():
        stored = _read(path)
        if isinstance(stored, dict) and "dataset" in stored:
            return Dataset(**{k: _unstack(v) for k, v in stored["dataset"].items()})
        return stored["value"]
    value = build()
    if isinstance(value, Dataset):
        entry = {"dataset": {f.name: _stack(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    else:
        entry = {"value": value}
    _store(path, lambda f: plain.save(f, entry))
    return value


def _stack(v: Any) -> Any:
    """A list of same-shaped arrays (images, masks) as one array: one archive member, not thousands."""
    if not (isinstance(v, list) and v and all(isinstance(a, np.ndarray) for a in v)):
        return v
    if len({(a.shape, a.dtype.str) for a in v}) == 1:
        return {"stacked": np.stack(v)}
    if len({(a.ndim, a.dtype.str) for a in v}) == 1:  # sizes differ: one flat array and the shapes
        return {"flat": np.concatenate([a.ravel() for a in v]), "shapes": np.array([a.shape for a in v])}
    return v


def _unstack(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"stacked"}:
        return list(v["stacked"])
    if isinstance(v, dict) and set(v) == {"flat", "shapes"}:
        ends = np.cumsum([int(np.prod(s)) for s in v["shapes"]])
        return [part.reshape(shape) for part, shape in zip(np.split(v["flat"], ends[:-1]), v["shapes"])]
    return v


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
    """One numpy array cached under ``key`` (compressed; e.g. predicted masks)."""
    if os.environ.get("OPTILEUK_CACHE") == "off":
        return build()
    path = cache_dir() / f"{kind}-{key_of(key)}.npz"
    if path.exists():
        return _read(path)["value"]
    array = np.asarray(build())
    _store(path, lambda f: plain.save(f, {"value": array}, compress=True))
    return array
