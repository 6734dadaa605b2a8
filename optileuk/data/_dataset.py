"""The one dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np


@dataclass
class Dataset:
    """Images with labels, and where known pixel masks and groups (patient, subject, source image).

    Attributes:
        images: RGB uint8 arrays (H, W, 3); sizes may differ between images.
        labels: integer class per image (index into ``classes``).
        classes: class names.
        masks: per-image uint8 masks (0 background, 1 cytoplasm, 2 nucleus), or ``None``.
        groups: per-image group id (images of one group never straddle a split), or ``None``.
        paths: where each image came from (file path, or a synthetic id).
        name: a short description (``synthetic``, ``folders:/data/x`` ...).
        extras: loader-specific per-image data (e.g. ALL-IDB1 blast centroids).
        duplicates: what :func:`optileuk.data.load_dataset` found and merged into one group (exact
            and near-identical images), or ``None`` when it was not checked.

    Example:
        >>> ds = Dataset([np.zeros((4, 4, 3), np.uint8)] * 2, np.array([0, 1]), ["a", "b"])
        >>> len(ds.subset([1])), ds.subset([1]).labels.tolist()
        (1, [1])
    """

    images: list[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    masks: list[np.ndarray] | None = None
    groups: np.ndarray | None = None
    paths: list[str] | None = None
    name: str = ""
    extras: dict[str, list[Any]] = field(default_factory=dict)
    duplicates: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.images)
        if len(self.labels) != n:
            raise ValueError(f"{n} images but {len(self.labels)} labels")
        if self.masks is not None and len(self.masks) != n:
            raise ValueError(f"{n} images but {len(self.masks)} masks")
        if self.groups is not None:
            self.groups = np.asarray(self.groups).astype(str)
            if len(self.groups) != n:
                raise ValueError(f"{n} images but {len(self.groups)} groups")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Dataset":
        idx = np.asarray(idx, dtype=np.int64)
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return replace(
            self, images=pick(self.images), labels=self.labels[idx], masks=pick(self.masks),
            groups=None if self.groups is None else self.groups[idx], paths=pick(self.paths),
            extras={k: pick(v) for k, v in self.extras.items()})

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}

    def stacked(self) -> np.ndarray:
        """Images as one (N, H, W, 3) array (all images must have the same size)."""
        return np.stack(self.images)
