"""Duplicate images: the same cell twice in a data set is one group, so it never sits on both sides of
a split (trained on and scored).

* **exact**: the same pixels (and shape);
* **near**: 64-bit difference hashes at most :data:`NEAR` bits apart *and* grey 32x32 thumbnails
  correlated at :data:`CORRELATION` or more (a hash alone pairs any two blurry blobs, e.g. small
  platelet crops). Candidate pairs come from an index of the hashes cut into four 16-bit bands: two
  hashes at most 3 bits apart agree exactly on at least one band (pigeonhole), so pairs that share
  no band are never compared, and each image's thumbnail is computed once, when it is first needed.

:func:`merge_duplicates` joins the groups (patients, source images) of linked images, so every split
made afterwards (test split, inner folds and repeats, outer parts) keeps them together.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Sequence

import numpy as np

from optileuk.data._dataset import Dataset

NEAR = 3  # a near duplicate: difference hashes at most this many bits apart ...
CORRELATION = 0.98  # ... and grey thumbnails correlated at least this much
_BANDS = 4  # 64 bits in 4 bands of 16: NEAR + 1 bands, so a near pair shares one exactly


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash: a 9x8 grey thumbnail, one bit per horizontal step (brighter or not)."""
    from PIL import Image

    g = np.asarray(Image.fromarray(_u8(image)).convert("L").resize((9, 8), Image.BILINEAR), float)
    bits = (g[:, 1:] > g[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A grey 32x32 thumbnail, centred and scaled to unit length (a dot product is a correlation)."""
    from PIL import Image

    t = np.asarray(Image.fromarray(_u8(image)).convert("L").resize((32, 32), Image.BILINEAR), float).ravel()
    return (t - t.mean()) / (t.std() + 1e-9) / np.sqrt(len(t))


def _u8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)


def exact_sets(images: Sequence[np.ndarray]) -> list[list[int]]:
    """Sets of two or more images with the same pixels (and shape), in index order."""
    seen: dict[str, list[int]] = {}
    for i, im in enumerate(images):
        key = hashlib.blake2b(np.ascontiguousarray(im).tobytes() + str(im.shape).encode(), digest_size=16).hexdigest()
        seen.setdefault(key, []).append(i)
    return [idx for idx in seen.values() if len(idx) > 1]


def near_pairs(images: Sequence[np.ndarray], hashes: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of near-identical images that are not exact copies of each other."""
    n = len(images)
    if n < 2:
        return []
    hashes = np.array([dhash(im) for im in images], dtype=np.uint64) if hashes is None else hashes
    exact = {i: k for k, idx in enumerate(exact_sets(images)) for i in idx}
    candidates: set[tuple[int, int]] = set()
    for band in range(_BANDS):
        key = (hashes >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        order = np.argsort(key, kind="stable")
        cuts = np.flatnonzero(np.diff(key[order])) + 1
        for bucket in np.split(order, cuts):
            if len(bucket) < 2:
                continue
            bucket = np.sort(bucket)
            for j, a in enumerate(bucket[:-1]):
                rest = bucket[j + 1:]
                bits = np.unpackbits(np.bitwise_xor(hashes[rest], hashes[a]).view(np.uint8).reshape(-1, 8), axis=1)
                candidates.update((int(a), int(b)) for b in rest[bits.sum(1) <= NEAR])
    thumbs: dict[int, np.ndarray] = {}

    def thumb(i: int) -> np.ndarray:
        if i not in thumbs:
            thumbs[i] = thumbnail(images[i])
        return thumbs[i]

    out = []
    for a, b in sorted(candidates):
        if a in exact and exact.get(b) == exact[a]:
            continue
        if float(thumb(a) @ thumb(b)) >= CORRELATION:
            out.append((a, b))
    return out


def merge_duplicates(ds: Dataset, *, near: bool = True) -> Dataset:
    """``ds`` with the groups of exact (and ``near``) duplicates joined; ``ds.duplicates`` says what was
    merged. Without duplicates ``ds`` is returned as it is (its splits do not change)."""
    sets = exact_sets(ds.images)
    links = [(idx[0], j) for idx in sets for j in idx[1:]]
    pairs = near_pairs(ds.images) if near else []
    info = {"exact_sets": len(sets), "exact_images": sum(len(s) for s in sets), "near_pairs": len(pairs),
            "merged_images": 0}
    if not links and not pairs:
        return replace(ds, duplicates=info)
    groups = np.asarray(ds.groups if ds.groups is not None else [f"#{i}" for i in range(len(ds))]).astype(str)
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.get(g, g) != g:
            parent[g] = parent.get(parent[g], parent[g])
            g = parent[g]
        return g

    for a, b in links + pairs:
        ra, rb = find(groups[a]), find(groups[b])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    merged = np.array([find(g) for g in groups])
    involved = {i for a, b in links + pairs for i in (a, b)}
    info["merged_images"] = len(involved)
    info["examples"] = [[_name(ds, a), _name(ds, b)] for a, b in (links + pairs)[:5]]
    return replace(ds, groups=merged, duplicates=info)


def _name(ds: Dataset, i: int) -> str:
    from pathlib import Path

    return Path(ds.paths[i]).name if ds.paths else f"#{i}"
