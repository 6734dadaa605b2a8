"""What ``optileuk predict`` reads: image files, folders and dataset specs, with any ground truth.

* an image file;
* a folder: with ``images/`` (and ``masks/``, ``labels.csv``) it is read as image/mask pairs; with
  sub-folders named after the model's classes, as class folders (the folder is the truth); else
  every image below it (recursively), without truth;
* a YAML file holding a dataset spec (``dataset: {type: cnmc, path: ...}``, any loader's layout;
  paths relative to the file): the loader reads it, its labels and masks are the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from optileuk.data import IMAGE_EXT, image_mask_pairs, read_image, read_labels, read_mask
from optileuk.errors import ConfigError, DataError, Problem


@dataclass
class Item:
    """One image to predict: where it comes from, and its truth when the input carries one."""

    name: str  # as written in predictions.csv (path relative to the input folder)
    stem: str  # where its mask and overlay go, below the output folder (unique)
    path: Path | None = None  # a file to read ...
    image: np.ndarray | None = None  # ... or the image itself (read by a dataset loader)
    truth: str | None = None  # class name
    mask_path: Path | None = None
    mask: np.ndarray | None = None  # 0/1/2

    def read(self) -> np.ndarray:
        return self.image if self.image is not None else read_image(self.path)

    def truth_mask(self) -> np.ndarray | None:
        if self.mask is not None:
            return self.mask
        return None if self.mask_path is None else read_mask(self.mask_path)


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _stem(rel: Path) -> str:
    return rel.with_suffix("").as_posix()


def _from_folder(root: Path, classes: Sequence[str]) -> list[Item]:
    if (root / "images").is_dir():  # image/mask pairs (masks/ optional), labels.csv optional
        masks = (root / "masks").is_dir()
        pairs = image_mask_pairs(root) if masks else [(p, None) for p in sorted((root / "images").iterdir())
                                              if p.is_file() and p.suffix.lower() in IMAGE_EXT]
        labels = read_labels(root / "labels.csv") if (root / "labels.csv").is_file() else {}
        return [Item(img.name, img.stem, path=img, truth=labels.get(img.stem), mask_path=mask) for img, mask in pairs]
    subs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if subs and classes and all(d.name in classes for d in subs):  # class folders: the folder is the truth
        return [Item(p.relative_to(root).as_posix(), _stem(p.relative_to(root)), path=p, truth=d.name)
                for d in subs for p in _images_below(d)]
    return [Item(p.relative_to(root).as_posix(), _stem(p.relative_to(root)), path=p) for p in _images_below(root)]


def dataset_spec(path: Path):
    """The dataset config in a YAML file (``dataset: {type: ..., ...}`` or the spec itself; a study file's
    ``objective.dataset`` too), its relative paths read from the file's folder."""
    from pydantic import TypeAdapter, ValidationError

    from optileuk.validation import problems_from, read_yaml
    from optileuk.data import DatasetConfig

    data = read_yaml(path, what="dataset spec")
    prefix: tuple = ()
    if isinstance(data, dict) and isinstance(data.get("objective"), dict) and "dataset" in data["objective"]:
        data, prefix = data["objective"], ("objective",)
    spec = data.get("dataset", data) if isinstance(data, dict) else data
    prefix = (*prefix, "dataset") if isinstance(data, dict) and "dataset" in data else prefix
    try:
        cfg = TypeAdapter(DatasetConfig).validate_python(spec)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, str(path), prefix, spec)) from None
    if isinstance(getattr(cfg, "path", None), str) and not Path(cfg.path).expanduser().is_absolute():
        cfg = cfg.model_copy(update={"path": str((path.parent / cfg.path).resolve())})
    return cfg


def _from_spec(path: Path) -> list[Item]:
    from optileuk.data import load_dataset

    cfg = dataset_spec(path)
    ds = load_dataset(cfg)
    truth = len(ds.classes) > 1 or (ds.classes != ["cell"])  # pairs without labels.csv: one class 'cell', no truth
    names = ds.paths or [f"{ds.name}#{i}" for i in range(len(ds))]
    items = []
    for i, name in enumerate(names):
        rel = Path(name).name if ds.paths else f"{i:06d}"
        items.append(Item(name, f"{Path(rel).stem}-{i}" if ds.paths else rel, image=ds.images[i],
                          truth=ds.classes[ds.labels[i]] if truth else None,
                          mask=None if ds.masks is None else ds.masks[i]))
    return items


def collect(inputs: Sequence[str | Path], classes: Sequence[str] = ()) -> list[Item]:
    """Every image the inputs name, in order, each with a unique output stem."""
    items: list[Item] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = _from_folder(path, classes)
            if len(inputs) > 1:  # several folders: keep their names apart
                for it in found:
                    it.name, it.stem = f"{path.name}/{it.name}", f"{path.name}/{it.stem}"
        elif path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
            found = _from_spec(path)
        elif path.is_file():
            found = [Item(str(raw), path.stem, path=path)]
        else:
            raise DataError(f"{raw}: no such image file, folder or dataset spec")
        if not found:
            raise DataError(f"{raw}: no images found ({', '.join(sorted(IMAGE_EXT))}, searched recursively)")
        items += found
    seen: dict[str, int] = {}
    for it in items:  # the same stem twice (a.png and a.jpg): number the later ones
        n = seen.get(it.stem, 0)
        seen[it.stem] = n + 1
        if n:
            it.stem = f"{it.stem}-{n + 1}"
    return items


def truth_kind(items: Sequence[Item]) -> dict[str, Any]:
    """Which truth the inputs carry: classes and/or masks, for how many items."""
    return {"classes": sum(it.truth is not None for it in items),
            "masks": sum(it.mask is not None or it.mask_path is not None for it in items)}


def check_inputs(inputs: Sequence[str]) -> None:
    if not inputs:
        raise ConfigError([Problem("", "INPUT", "give at least one image file, folder or dataset spec")])
