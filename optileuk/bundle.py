"""Model bundles: the run folder ``optileuk train`` writes, kept as data so that opening one never
runs code.

A bundle is a folder with

* ``model.json`` -- format and version, the objective (type and full config), the tuned params,
  classes in order, input geometry, stain method, features, seed, the versions it was trained
  with, a fingerprint of the training data, the test metrics, the SHA-256 of every file below and
  a checksum over all of it;
* ``weights.safetensors`` -- torch tensors (networks, trunks), with the architecture in its metadata;
* ``arrays.npz`` -- numpy arrays (stain reference, feature scaling, feature masks), read with
  ``allow_pickle=False``;
* ``estimators.skops`` -- scikit-learn parts (scaler + classifier), read by skops with an explicit
  list of trusted types; anything else in the file is refused before it is built.

No pickle anywhere: a folder holding ``model.pkl`` (what optileuk wrote before bundles) is refused.

Example:
    >>> model = load("runs/best")  # doctest: +SKIP
    >>> model.predict(["cell.png"])  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from optileuk.errors import DataError
from optileuk.plain import jsonable
from optileuk.registry import OBJECTIVES

FORMAT = "optileuk-model"
VERSION = 1
FILES = {"weights": "weights.safetensors", "arrays": "arrays.npz", "estimators": "estimators.skops"}
# scikit-learn types skops does not trust by default that our classifiers hold (trees, KD-trees, metrics)
TRUSTED_TYPES = ["sklearn.metrics._dist_metrics.EuclideanDistance64", "sklearn.neighbors._kd_tree.KDTree",
                 "sklearn.neighbors._ball_tree.BallTree", "sklearn.tree._tree.Tree"]


class BundleError(DataError):
    """A run folder that is not a bundle this optileuk can open safely."""


class BundleMeta(BaseModel):
    """``model.json``."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["optileuk-model"]
    version: int
    objective: dict[str, Any]
    params: dict[str, Any]
    task: Literal["classification", "segmentation", "both"]
    classes: list[str]
    stain: dict[str, Any]
    spec: dict[str, Any]
    model: dict[str, Any]
    seed: int
    versions: dict[str, str]
    training_data: dict[str, Any]
    metrics: dict[str, Any]
    created: str
    files: dict[str, str]
    members: Optional[list[dict[str, Any]]] = None  # an ensemble: [{path, weight, checksum}] of member bundles
    checksum: str


def trusted_estimators() -> tuple[type, ...]:
    """The scikit-learn classes a bundle's estimators may be (scalers, classifiers, their pipeline)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler, StandardScaler
    from sklearn.svm import SVC

    return (Pipeline, StandardScaler, RobustScaler, SVC, KNeighborsClassifier, LogisticRegression,
            RandomForestClassifier)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checksum(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    from optileuk import __version__

    return {"optileuk": __version__, "torch": str(torch.__version__), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}


# ---- writing -------------------------------------------------------------------------------------------
def save(model, folder: str | Path, *, objective: dict[str, Any], params: dict[str, Any], metrics: dict[str, Any],
         training_data: dict[str, Any], member_params: list[dict[str, Any]] | None = None) -> Path:
    """Write ``model`` (a :class:`~optileuk.objectives._model.FittedModel`) as a bundle into ``folder``; an
    ensemble's members each as a bundle of their own in ``members/<i>`` (``member_params``: their params),
    named with their weights and checksums in ``model.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    members = None
    if getattr(model, "members", None):
        members = []
        for i, (member, weight) in enumerate(zip(model.members, model.weights)):
            sub = save(member, folder / "members" / str(i), objective=objective,
                       params=(member_params or [{}] * len(model.members))[i], metrics={}, training_data=training_data)
            members.append({"path": f"members/{i}", "weight": float(weight),
                            "checksum": json.loads((sub / "model.json").read_text())["checksum"]})
    files: dict[str, str] = {}
    if members is not None:  # the members hold every part; the ensemble only their weights
        meta_only = True
    else:
        meta_only = False
    tensors = {} if meta_only else {k: v.detach().cpu().contiguous() for k, v in model.tensors().items()}
    if tensors:
        from safetensors.torch import save_file

        save_file(tensors, str(folder / FILES["weights"]),
                  metadata={"format": FORMAT, "objective": objective["type"], "spec": json.dumps(model.spec)})
        files[FILES["weights"]] = _sha256(folder / FILES["weights"])
    arrays = {} if meta_only else {f"stain.{k}": v for k, v in model.stain.state().items()}
    arrays.update({k: np.asarray(v) for k, v in model.arrays().items()})
    if arrays:
        np.savez(folder / FILES["arrays"], **arrays)
        files[FILES["arrays"]] = _sha256(folder / FILES["arrays"])
    estimators = model.estimators()
    if estimators:
        import skops.io as sio

        sio.dump(estimators, folder / FILES["estimators"])
        files[FILES["estimators"]] = _sha256(folder / FILES["estimators"])
    meta = {"format": FORMAT, "version": VERSION, "objective": objective, "params": jsonable(params),
            "task": model.task, "classes": list(model.classes), "stain": {"method": model.stain.method},
            "spec": jsonable(model.spec), "model": jsonable(model.describe()), "seed": int(model.seed),
            "versions": _versions(), "training_data": jsonable(training_data), "metrics": jsonable(metrics),
            "created": _dt.datetime.now().isoformat(timespec="seconds"), "files": files}
    if members is not None:
        meta["members"] = members
    meta["checksum"] = _checksum(json.loads(json.dumps(meta)))
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


# ---- reading -------------------------------------------------------------------------------------------
def check(folder: str | Path) -> BundleMeta:
    """Read and verify a bundle's ``model.json`` and files (nothing is built, nothing runs)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder (give the run folder optileuk train wrote)")
    if any(folder.glob("*.pkl")):
        raise BundleError(f"{folder}: holds {next(folder.glob('*.pkl')).name}, a pickle an older optileuk wrote; "
                          "optileuk never loads pickles (they can run code): train again with optileuk train "
                          f"{folder / 'config.yaml'} -o <new folder>")
    path = folder / "model.json"
    if not path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no model.json); optileuk train writes one")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); the bundle is damaged: train again") from None
    if isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("version") != VERSION:
        raise BundleError(f"{path}: bundle format version {raw.get('version')!r} is not one this optileuk reads "
                          f"({VERSION}); use the optileuk version that wrote it, or train again")
    try:
        meta = BundleMeta.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BundleError(f"{path}: {where} {first['msg'].lower()}: not a model.json optileuk wrote "
                          "(damaged or edited); train again") from None
    if _checksum(raw) != meta.checksum:
        raise BundleError(f"{path}: its checksum does not match its content: model.json was edited after "
                          "training; train again")
    for name, digest in meta.files.items():
        if name not in FILES.values():
            raise BundleError(f"{path}: files names {name!r}, which is not a bundle file ({', '.join(FILES.values())})")
        if not (folder / name).is_file():
            raise BundleError(f"{folder}: {name} is missing (model.json lists it)")
        if _sha256(folder / name) != digest:
            raise BundleError(f"{folder / name}: does not match model.json (SHA-256 differs): the file was changed "
                              "after training; train again")
    for i, member in enumerate(meta.members or []):
        if member.get("path") != f"members/{i}":
            raise BundleError(f"{path}: members[{i}] must be the folder members/{i}, got {member.get('path')!r}")
        sub = check(folder / member["path"])
        if sub.checksum != member.get("checksum"):
            raise BundleError(f"{folder / member['path'] / 'model.json'}: is not the member model.json lists (checksum "
                              "differs): the ensemble was changed after training; train again")
    return meta


def _estimators(path: Path) -> dict[str, Any]:
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a skops file at all
        raise BundleError(f"{path}: cannot be read as a skops file ({type(exc).__name__}: {exc})") from None
    bad = [t for t in untrusted if t not in TRUSTED_TYPES]
    if bad:
        raise BundleError(f"{path}: holds types optileuk does not trust ({', '.join(bad[:5])}); refused without "
                          "building anything")
    out = sio.load(path, trusted=TRUSTED_TYPES)
    allowed = trusted_estimators()
    if not isinstance(out, dict) or not all(isinstance(v, allowed) for v in out.values()):
        raise BundleError(f"{path}: holds something other than optileuk's scalers and classifiers")
    for est in out.values():
        steps = [s for _, s in getattr(est, "steps", [])]
        if any(s != "passthrough" and not isinstance(s, allowed) for s in steps):
            raise BundleError(f"{path}: a pipeline step is not one of optileuk's scalers and classifiers")
    return out


def load(folder: str | Path, device: str = "auto"):
    """The fitted model of a bundle, ready to apply (``device``: where networks run; ``auto`` = CUDA
    when present). Everything is verified first (:func:`check`); files are read as data only."""
    from optileuk.data import StainNormaliser
    folder = Path(folder)
    meta = check(folder)
    if meta.members:
        from optileuk.objectives import EnsembleModel

        model = EnsembleModel([load(folder / m["path"], device) for m in meta.members], [m["weight"] for m in meta.members])
        model.meta = meta
        return model
    kind = meta.objective.get("type")
    found = OBJECTIVES.resolve(kind) if isinstance(kind, str) else None
    model_cls = getattr(found[0], "Model", None) if found else None
    if model_cls is None:
        raise BundleError(f"{folder / 'model.json'}: objective type {kind!r} has no model this optileuk can apply")
    tensors, arrays, estimators = {}, {}, {}
    if FILES["weights"] in meta.files:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / FILES["weights"]), device="cpu")
    if FILES["arrays"] in meta.files:
        with np.load(folder / FILES["arrays"], allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    if FILES["estimators"] in meta.files:
        estimators = _estimators(folder / FILES["estimators"])
    reference = {k[len("stain."):]: v for k, v in arrays.items() if k.startswith("stain.")}
    stain = StainNormaliser.from_state(meta.stain["method"], reference)
    try:
        model = model_cls.restore(meta.spec, classes=meta.classes, stain=stain, seed=meta.seed, device=device,
                                  tensors=tensors, arrays=arrays, estimators=estimators)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise BundleError(f"{folder}: the bundle's parts do not fit its model.json ({type(exc).__name__}: {exc}); "
                          "train again") from None
    model.meta = meta
    return model


__all__ = ["BundleError", "BundleMeta", "FILES", "FORMAT", "VERSION", "check", "load", "save"]
