"""Building a synthetic dataset from its config (deterministic from ``seed``, cached on disk)."""

from __future__ import annotations

import numpy as np

from optileuk.data._cache import cached
from optileuk.data._config import SyntheticData
from optileuk.data._dataset import Dataset
from optileuk.data._synthetic import Realism, make_crop, make_field, smear_stain


def synthetic(cfg: SyntheticData, *, cache: bool = True) -> Dataset:
    """Balanced classes, ``n_per_class`` images each, spread over ``smears`` simulated slides.

    Example:
        >>> ds = synthetic(SyntheticData(type="synthetic", n_per_class=2, size=32), cache=False)
        >>> len(ds), ds.classes, ds.masks[0].shape
        (8, ['normal', 'L1', 'L2', 'L3'], (32, 32))
    """
    return cached("synthetic", cfg.model_dump(mode="json"), lambda: _build(cfg), enabled=cache)


def _build(cfg: SyntheticData) -> Dataset:
    realism = Realism(**cfg.realism.model_dump())
    root = np.random.SeedSequence(cfg.seed)
    stain_rng, order_rng = (np.random.default_rng(s) for s in root.spawn(2))
    stains = [smear_stain(stain_rng, realism.stain_jitter) for _ in range(cfg.smears)]
    labels = np.repeat(np.arange(len(cfg.classes)), cfg.n_per_class)
    smear_of = order_rng.integers(0, cfg.smears, size=len(labels))
    # one child seed per image: any image can be regenerated alone, the result is order-free
    seeds = np.random.SeedSequence(cfg.seed + 1).spawn(len(labels))
    images, masks = [], []
    for lab, smear, seed in zip(labels, smear_of, seeds):
        rng = np.random.default_rng(seed)
        kind = cfg.classes[lab]
        if cfg.kind == "crops":
            img, mask = make_crop(kind, cfg.size, rng, stains[smear], realism, cfg.difficulty)
        else:
            img, mask = make_field([kind], cfg.size, rng, stains[smear], realism, cfg.difficulty,
                                   cfg.red_cells_per_field)
        images.append(img)
        masks.append(mask)
    return Dataset(images, labels, list(cfg.classes), masks, np.array([f"smear{s:03d}" for s in smear_of]),
                   [f"synthetic:{cfg.kind}:{i}" for i in range(len(labels))], name=f"synthetic {cfg.kind}")
