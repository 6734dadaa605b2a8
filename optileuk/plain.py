"""State as data: nested Python and numpy values as JSON plus numpy arrays, never a pickle.

What optileuk keeps between runs -- an optimizer's state in the study storage, datasets and
features in the cache folder -- is written with :func:`encode` / :func:`save` and read back with
:func:`decode` / :func:`load`. The JSON tree holds the structure and the scalars; arrays go to an
``.npz`` archive read with ``allow_pickle=False``. Reading one back can build only the types listed
below, so a storage or a cache file from someone else can never run code.

Types: ``None``, ``bool``, ``int``, ``float`` (also NaN and infinities), ``str``, ``list``,
``tuple``, ``dict`` (any keys of these types), numpy arrays of any non-object dtype and numpy
scalars. Tagged JSON objects (one key starting with ``__``) mark what plain JSON cannot hold.

Example:
    >>> import numpy as np
    >>> state = {"rng": ("MT19937", np.arange(3, dtype=np.uint32)), 7: [1.5, float("inf")]}
    >>> back = decode(encode(state))
    >>> back[7], back["rng"][1].tolist(), type(back["rng"])
    ([1.5, inf], [0, 1, 2], <class 'tuple'>)
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from optileuk.errors import OptileukError

FORMAT = 1  # version of the layout below; a reader refuses any other
_TREE = "__tree__"


class NotData(OptileukError):
    """A value that cannot be stored as data, or a stored blob that is not optileuk's data format."""


# ---- the JSON tree ------------------------------------------------------------------------------------
def to_tree(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as a JSON-able tree; its arrays are moved into ``arrays`` (named ``a0``, ``a1``...)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, float) and not isinstance(obj, np.generic):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise NotData(f"an array of Python objects (dtype {obj.dtype}) cannot be stored as data")
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, np.generic):
        if isinstance(obj, np.object_) or obj.dtype.hasobject:
            raise NotData("a numpy object scalar cannot be stored as data")
        return {"__np__": [obj.dtype.str, to_tree(obj.item(), arrays)]}
    if isinstance(obj, tuple):
        return {"__tuple__": [to_tree(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [to_tree(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: to_tree(v, arrays) for k, v in obj.items()}
        return {"__dict__": [[to_tree(k, arrays), to_tree(v, arrays)] for k, v in obj.items()]}
    raise NotData(f"a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored as data")


def from_tree(tree: Any, arrays: Any) -> Any:
    """Inverse of :func:`to_tree` (``arrays``: a mapping of the stored arrays)."""
    if isinstance(tree, list):
        return [from_tree(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        return tree
    tag = next(iter(tree), None)
    if tag is None or not tag.startswith("__"):
        return {k: from_tree(v, arrays) for k, v in tree.items()}
    if len(tree) != 1:
        raise NotData(f"malformed tag {tag!r} in stored data")
    body = tree[tag]
    if tag == "__array__":
        return np.asarray(arrays[body])
    if tag == "__tuple__":
        return tuple(from_tree(v, arrays) for v in body)
    if tag == "__dict__":
        return {_key(from_tree(k, arrays)): from_tree(v, arrays) for k, v in body}
    if tag == "__float__":
        return float(body)
    if tag == "__np__":
        dtype = np.dtype(body[0])
        if dtype.hasobject:
            raise NotData("a numpy object scalar in stored data")
        return dtype.type(from_tree(body[1], arrays))
    raise NotData(f"unknown tag {tag!r} in stored data")


def _key(k: Any) -> Any:
    return tuple(_key(v) for v in k) if isinstance(k, (list, tuple)) else k


# ---- one blob (a study attr) --------------------------------------------------------------------------
def encode(obj: Any) -> dict[str, Any]:
    """``obj`` as a JSON-able dict: ``{"format", "tree", "arrays"}`` (arrays: base64 of an .npz)."""
    arrays: dict[str, np.ndarray] = {}
    tree = to_tree(obj, arrays)
    blob = None
    if arrays:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        blob = base64.b64encode(buf.getvalue()).decode("ascii")
    return {"format": FORMAT, "tree": tree, "arrays": blob}


def decode(data: Any) -> Any:
    """Inverse of :func:`encode`; :class:`NotData` for anything else (e.g. a pickle)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or "tree" not in data:
        raise NotData("not optileuk's data format (version %s)" % FORMAT)
    arrays: dict[str, np.ndarray] = {}
    if data.get("arrays"):
        try:
            raw = base64.b64decode(data["arrays"], validate=True)
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, TypeError, zipfile.BadZipFile) as exc:  # pickled members: ValueError
            raise NotData(f"its arrays do not load without pickle, or are damaged ({type(exc).__name__}: {exc})") from None
    try:
        return from_tree(data["tree"], arrays)
    except NotData:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # a truncated or edited tree
        raise NotData(f"it is damaged ({type(exc).__name__}: {exc})") from None


# ---- one file (a cache entry) -------------------------------------------------------------------------
def save(path: str | os.PathLike, obj: Any, *, compress: bool = False) -> None:
    """Write ``obj`` to ``path`` as one ``.npz`` (the tree as a JSON member)."""
    arrays: dict[str, np.ndarray] = {}
    tree = to_tree(obj, arrays)
    text = json.dumps({"format": FORMAT, "tree": tree}).encode()
    (np.savez_compressed if compress else np.savez)(path, **{_TREE: np.frombuffer(text, dtype=np.uint8)}, **arrays)


def load(path: str | os.PathLike) -> Any:
    """Read a file written by :func:`save`; :class:`NotData` if it is anything else."""
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            if _TREE not in npz.files:
                raise NotData(f"{path}: not an optileuk data file")
            head = json.loads(npz[_TREE].tobytes().decode())
            if head.get("format") != FORMAT:
                raise NotData(f"{path}: data format {head.get('format')!r}, expected {FORMAT}")
            return from_tree(head["tree"], npz)
    except NotData:
        raise
    except (ValueError, OSError, EOFError, KeyError, json.JSONDecodeError) as exc:
        raise NotData(f"{path}: does not load as data without pickle ({exc})") from None


def jsonable(value: Any) -> Any:
    """``value`` for :func:`json.dumps`: numpy arrays as lists, numpy scalars as numbers, non-finite
    floats as ``None``, tuples as lists, keys as strings (what model.json, assess.json and
    metrics.json hold).

    Example:
        >>> jsonable({"a": np.arange(2), 3: (np.float32(0.5), float("nan"))})
        {'a': [0, 1], '3': [0.5, None]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
