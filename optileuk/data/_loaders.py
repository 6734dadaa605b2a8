"""Loaders for the layouts the field uses; each returns a :class:`Dataset`.

Bad data (missing folder, empty class, unreadable image, mask of the wrong size, unknown label)
raises :class:`DataError` naming the file and the problem; with ``on_error: skip`` bad files
are skipped and counted in one warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from optileuk.data._cache import cached
from optileuk.data._config import AllIdb1Data, AllIdb2Data, CnmcData, FoldersData, PairsData
from optileuk.data._dataset import Dataset
from optileuk.errors import DataError

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
MASK_SUFFIXES = ("_mask", "-mask", "_gt", "_seg")


class DataWarning(UserWarning):
    """Bad files were skipped (``on_error: skip``)."""


class ChannelsError(DataError):
    """An image that reads but whose channels cannot be made RGB."""


def as_rgb(image, where: str = "image") -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from an array of any usual layout: grey (H, W) or (H, W, 1), RGBA
    (alpha dropped), 16-bit (divided by 257) or float in [0, 1] (times 255); else :class:`ChannelsError`.

    Example:
        >>> as_rgb(np.full((2, 3), 65535, np.uint16)).shape, int(as_rgb(np.full((2, 3), 65535, np.uint16)).max())
        ((2, 3, 3), 255)
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ChannelsError(f"{where}: channels cannot be made RGB (an image must be (H, W), (H, W, 1), (H, W, 3) "
                            f"or (H, W, 4); got shape {tuple(arr.shape)})")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ChannelsError(f"{where}: channels cannot be made RGB (dtype {arr.dtype})")


_WIDE = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16}


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 array (grey, palette, RGBA, CMYK, 16-bit images converted), or :class:`DataError`
    naming the file (:class:`ChannelsError` when it reads but its channels cannot be made RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in _WIDE:  # 16-bit grey: PIL's own conversion would clip it at 255
                return as_rgb(np.asarray(im).astype(np.uint16), str(path))
            if im.mode == "F":
                return as_rgb(np.asarray(im), str(path))
            try:
                rgb = im.convert("RGB")
            except ValueError as exc:
                raise ChannelsError(f"{path}: channels cannot be made RGB (mode {im.mode}: {exc})") from None
            return np.asarray(rgb)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ChannelsError):
            raise
        raise DataError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc})") from None


def read_mask(path: Path, binary_as: str = "nucleus") -> np.ndarray:
    """Mask as 0 background / 1 cytoplasm / 2 nucleus.

    Binary masks (two levels) become nucleus (or cell, ``binary_as``); three levels (e.g.
    0/128/255) map by rank to background/cytoplasm/nucleus; more levels are an error.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as a mask ({type(exc).__name__}: {exc})") from None
    levels = np.unique(arr)
    if len(levels) > 3:
        raise DataError(f"{path}: a mask must have at most 3 levels (background, cytoplasm, nucleus), "
                        f"got {len(levels)} ({', '.join(map(str, levels[:6]))}{'...' if len(levels) > 6 else ''})")
    out = np.zeros(arr.shape, np.uint8)
    if len(levels) == 3:
        out[arr == levels[1]] = 1
        out[arr == levels[2]] = 2
    elif len(levels) == 2:
        out[arr == levels[1]] = 2 if binary_as == "nucleus" else 1
    return out


class _Collector:
    """Collects bad files: raise them all at once, or skip them with one warning."""

    def __init__(self, on_error: str, where: str):
        self.on_error, self.where, self.bad = on_error, where, []

    def attempt(self, fn: Callable, *args):
        try:
            return fn(*args)
        except DataError as exc:
            self.bad.append(str(exc))
            return None

    def done(self) -> None:
        if not self.bad:
            return
        if self.on_error == "raise":
            more = f"\n... and {len(self.bad) - 10} more" if len(self.bad) > 10 else ""
            raise DataError("\n".join(self.bad[:10]) + more + "\n(set on_error: skip to leave bad files out)")
        warnings.warn(f"{self.where}: skipped {len(self.bad)} bad file(s); first: {self.bad[0]}", DataWarning, stacklevel=3)


def _folder(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataError(f"{p}: {what} folder not found")
    return p


def _images_in(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXT)


def _signature(files: list[Path]) -> list:
    return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _load(kind: str, files: list[Path], cfg, build: Callable[[], Dataset]) -> Dataset:
    return cached(kind, {"cfg": cfg.model_dump(mode="json"), "files": _signature(files)}, build)


# ---- class folders --------------------------------------------------------------------------------
def load_folders(cfg: FoldersData) -> Dataset:
    root = _folder(cfg.path, "dataset")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if cfg.classes is not None:
        names = {d.name for d in class_dirs}
        missing = [c for c in cfg.classes if c not in names]
        if missing:
            raise DataError(f"{root}: no folder for class {missing[0]!r} (found: {', '.join(sorted(names))})")
        class_dirs = [d for d in class_dirs if d.name in cfg.classes]
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected <path>/<class>/<image>)")
    files, labels = [], []
    for i, d in enumerate(class_dirs):
        imgs = _images_in(d)
        if not imgs:
            raise DataError(f"{d}: class folder has no images ({', '.join(sorted(IMAGE_EXT))})")
        files += imgs
        labels += [i] * len(imgs)
    pattern = re.compile(cfg.group_pattern) if cfg.group_pattern else None

    def build() -> Dataset:
        col = _Collector(cfg.on_error, str(root))
        images, keep, groups = [], [], []
        for j, f in enumerate(files):
            img = col.attempt(read_image, f)
            if img is None:
                continue
            group = None
            if pattern is not None:
                m = pattern.search(f.name)
                if m is None:
                    col.bad.append(f"{f}: file name does not match group_pattern {pattern.pattern!r}")
                    continue
                group = m.group(1) if m.groups() else m.group(0)
            images.append(img)
            keep.append(j)
            groups.append(group)
        col.done()
        return Dataset(images, np.array(labels)[keep], [d.name for d in class_dirs], None,
                       np.array(groups) if pattern is not None else None, [str(files[j]) for j in keep],
                       name=f"folders:{root}")

    return _load("folders", files, cfg, build)


# ---- ALL-IDB -------------------------------------------------------------------------------------
_IDB = re.compile(r"^Im(\d+)_([01])\.(jpg|tif|tiff)$", re.IGNORECASE)


def _idb_label(f: Path, col: _Collector) -> int | None:
    m = _IDB.match(f.name)
    if m is None:
        col.bad.append(f"{f}: name does not follow ImNNN_Y (Y = 1 blast/ALL, 0 healthy)")
        return None
    return int(m.group(2))


def load_all_idb2(cfg: AllIdb2Data) -> Dataset:
    root = _folder(cfg.path, "ALL-IDB2")
    folder = root / "img" if (root / "img").is_dir() else root
    files = [f for f in _images_in(folder) if f.suffix.lower() in (".tif", ".tiff")]
    if not files:
        raise DataError(f"{folder}: no ImNNN_Y.tif images")

    def build() -> Dataset:
        col = _Collector(cfg.on_error, str(folder))
        images, labels, paths = [], [], []
        for f in files:
            lab = _idb_label(f, col)
            img = col.attempt(read_image, f) if lab is not None else None
            if img is not None:
                images.append(img)
                labels.append(lab)
                paths.append(str(f))
        col.done()
        return Dataset(images, np.array(labels), ["normal", "blast"], None, None, paths, name=f"all_idb2:{root}")

    return _load("all_idb2", files, cfg, build)


def load_all_idb1(cfg: AllIdb1Data) -> Dataset:
    """Whole smear photographs; label = patient (1 ALL, 0 healthy); blast centroids in ``extras``."""
    root = _folder(cfg.path, "ALL-IDB1")
    folder = root / "im" if (root / "im").is_dir() else root
    files = [f for f in _images_in(folder) if f.suffix.lower() == ".jpg"]
    if not files:
        raise DataError(f"{folder}: no ImNNN_Y.jpg images")

    def build() -> Dataset:
        col = _Collector(cfg.on_error, str(folder))
        images, labels, paths, cents = [], [], [], []
        for f in files:
            lab = _idb_label(f, col)
            if lab is None:
                continue
            xyc = f.with_suffix(".xyc")
            if not xyc.exists():
                col.bad.append(f"{f}: no centroid file {xyc.name} beside it")
                continue
            try:
                rows = [ln.split() for ln in xyc.read_text().splitlines() if ln.strip()]
                pts = np.array([[float(r[0]), float(r[1])] for r in rows]).reshape(-1, 2)
            except (ValueError, IndexError):
                col.bad.append(f"{xyc}: each line must be 'x y'")
                continue
            img = col.attempt(read_image, f)
            if img is None:
                continue
            images.append(img)
            labels.append(lab)
            paths.append(str(f))
            cents.append(pts)
        col.done()
        groups = np.array([Path(p).stem for p in paths])  # one photograph = one source image
        return Dataset(images, np.array(labels), ["healthy", "all"], None, groups, paths,
                       name=f"all_idb1:{root}", extras={"blast_centroids": cents})

    return _load("all_idb1", files, cfg, build)


# ---- C-NMC 2019 ---------------------------------------------------------------------------------
_CNMC = re.compile(r"^UID_(H?\d+)_\d+_\d+_(all|hem)\.bmp$", re.IGNORECASE)


def load_cnmc(cfg: CnmcData) -> Dataset:
    root = _folder(cfg.path, "C-NMC")
    folds = sorted(d for d in root.glob("fold_*") if d.is_dir())
    if cfg.folds is not None:
        want = {f"fold_{k}" for k in cfg.folds}
        missing = want - {d.name for d in folds}
        if missing:
            raise DataError(f"{root}: no folder {sorted(missing)[0]}")
        folds = [d for d in folds if d.name in want]
    if not folds:
        raise DataError(f"{root}: no fold_K folders (expected fold_K/all and fold_K/hem)")
    files, labels = [], []
    for d in folds:
        for lab, cls in ((0, "hem"), (1, "all")):
            sub = d / cls
            if not sub.is_dir():
                raise DataError(f"{sub}: folder not found (C-NMC layout: fold_K/all, fold_K/hem)")
            imgs = _images_in(sub)
            files += imgs
            labels += [lab] * len(imgs)
    if not files:
        raise DataError(f"{root}: no .bmp images in the fold folders")

    def build() -> Dataset:
        col = _Collector(cfg.on_error, str(root))
        images, keep, groups = [], [], []
        for j, f in enumerate(files):
            m = _CNMC.match(f.name)
            if m is None:
                col.bad.append(f"{f}: name does not follow UID_<subject>_<image>_<cell>_<all|hem>.bmp")
                continue
            if (m.group(2).lower() == "all") != (labels[j] == 1):
                col.bad.append(f"{f}: label in the name ({m.group(2)}) disagrees with its folder")
                continue
            img = col.attempt(read_image, f)
            if img is None:
                continue
            images.append(img)
            keep.append(j)
            groups.append(m.group(1))
        col.done()
        return Dataset(images, np.array(labels)[keep], ["hem", "all"], None, np.array(groups),
                       [str(files[j]) for j in keep], name=f"cnmc:{root}")

    return _load("cnmc", files, cfg, build)


# ---- image / mask pairs ---------------------------------------------------------------------------
def image_mask_pairs(root: Path, mask_dir: str = "masks") -> list[tuple[Path, Path | None]]:
    if (root / "images").is_dir():
        mdir = root / mask_dir
        if not mdir.is_dir():
            others = sorted(d.name + "/" for d in root.iterdir() if d.is_dir() and d.name != "images")
            raise DataError(f"{root}: has images/ but no {mask_dir}/ folder (mask_dir; folders there: "
                            f"{', '.join(others) or 'none'})")
        masks = {f.stem: f for f in _images_in(mdir)}
        return [(f, masks.get(f.stem)) for f in _images_in(root / "images")]
    files = _images_in(root)
    by_stem = {f.stem: f for f in files}
    out = []
    for f in files:
        if any(f.stem.endswith(s) for s in MASK_SUFFIXES):
            continue
        mask = next((by_stem[f.stem + s] for s in MASK_SUFFIXES if f.stem + s in by_stem), None)
        out.append((f, mask))
    return out


def read_labels(path: Path) -> dict[str, str]:
    """``{image stem: class}`` from a CSV whose first two columns are image (stem or file name) and class."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as a CSV of image classes ({type(exc).__name__}: {exc})") from None
    if rows and rows[0][0].strip().lower() in ("id", "image", "file", "filename", "name", "stem"):
        rows = rows[1:]
    out = {}
    for n, r in enumerate(rows, 1):
        if len(r) < 2 or not r[1].strip():
            raise DataError(f"{path}: row {n} must be 'image,class' (got {','.join(r)!r})")
        out[Path(r[0].strip()).stem] = r[1].strip()
    if not out:
        raise DataError(f"{path}: no rows (expected 'image,class' lines)")
    return out


def load_pairs(cfg: PairsData) -> Dataset:
    root = _folder(cfg.path, "image/mask")
    pairs = image_mask_pairs(root, cfg.mask_dir)
    if not pairs:
        raise DataError(f"{root}: no images (expected images/ + masks/, or x.png beside x_mask.png)")
    files = [p for pair in pairs for p in pair if p is not None]
    labels_path = root / cfg.labels if cfg.labels else root / "labels.csv"
    if cfg.labels and not labels_path.is_file():
        raise DataError(f"{labels_path}: labels file not found (labels)")
    label_of = read_labels(labels_path) if labels_path.is_file() else None
    if label_of is not None:
        files.append(labels_path)

    def build() -> Dataset:
        col = _Collector(cfg.on_error, str(root))
        images, masks, paths = [], [], []
        for img_path, mask_path in pairs:
            if mask_path is None:
                col.bad.append(f"{img_path}: no mask with the same stem")
                continue
            if label_of is not None and img_path.stem not in label_of:
                col.bad.append(f"{img_path}: no row for {img_path.stem!r} in {labels_path.name}")
                continue
            img = col.attempt(read_image, img_path)
            mask = col.attempt(read_mask, mask_path, cfg.binary_as) if img is not None else None
            if img is None or mask is None:
                continue
            if mask.shape != img.shape[:2]:
                col.bad.append(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                               f"{img.shape[1]}x{img.shape[0]}")
                continue
            images.append(img)
            masks.append(mask)
            paths.append(str(img_path))
        col.done()
        stems = [Path(p).stem for p in paths]
        if label_of is None:
            classes, labels = ["cell"], np.zeros(len(images), int)
        else:
            classes = sorted({label_of[s] for s in stems})
            labels = np.array([classes.index(label_of[s]) for s in stems], dtype=int)
        return Dataset(images, labels, classes, masks, np.array(stems), paths, name=f"pairs:{root}")

    return _load("pairs", files, cfg, build)
