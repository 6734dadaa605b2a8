"""``segmentation``: colour clustering / pivot growing / Otsu nucleus segmentation scored against masks.

Pipeline (each step a searchable parameter; unsearched ones take ``defaults``):

0. input: ``stain`` (none | reinhard | macenko normalisation to the search part's stain),
   ``image_size`` (0 = each image at its own size; else work on a square of that side placed by
   ``resize``: pad | crop | stretch, and map the mask back onto the image's pixels);
1. colour space ``rgb | hsv | lab``, Gaussian blur ``blur_sigma``;
2. ``method``: ``kmeans`` (k clusters of pixel colours; the nucleus is the cluster of darkness
   rank ``nucleus_rank``, 0 = darkest), ``pgs`` (pivot-growing segmentation, seed 003: k-medoid
   pivots, each grows the pixels within squared colour distance ``T`` of it that are connected
   to its cluster; pivots iterate until they move <= ``epsilon`` or ``max_iter``), or ``otsu``
   (Otsu threshold on darkness, shifted by ``threshold_offset``);
3. morphology: ``opening`` and ``closing`` radii, ``min_size`` (pixels), ``fill_holes``.

Scored with Dice, IoU and SSIM (``skimage.metrics``) against the nucleus (or whole-cell) masks,
averaged over the images of the search part (the test split is never used). ``score: mean`` is
the seed paper's mean of the three. The value is ``1 - score``. Clusterings are cached per
(image, colour space, blur, method, k, pivot settings), so candidates that differ only in
post-processing do not recompute them. Multi-objective studies (``objectives: [error,
seconds_per_image]``) add the pipeline's cost: seconds per image of clustering (as measured when
it was computed, not the cache lookup) plus post-processing, averaged over the images.
"""

from __future__ import annotations

import contextlib
import time
from functools import lru_cache
from typing import Any, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import Field
from scipy import ndimage
from skimage import color, filters, morphology
from sklearn.cluster import KMeans

from optileuk.data import DatasetConfig, SplitConfig, SyntheticData, from_square, square_image
from optileuk.metrics import mask_scores
from optileuk.folds import options
from optileuk.objectives._base import Objective, ObjectiveConfig, Score
from optileuk.objectives._final import Fitted
from optileuk.objectives._inputs import prepare_images
from optileuk.objectives._model import CELL, NUCLEUS, FittedModel, Prediction

DEFAULTS = {"colour_space": "lab", "blur_sigma": 1.0, "method": "kmeans", "k": 3, "nucleus_rank": 0, "T": 0.02,
            "max_iter": 10, "epsilon": 1e-3, "threshold_offset": 0.0, "opening": 0, "closing": 0, "min_size": 0,
            "fill_holes": False, "image_size": 0, "resize": "pad", "stain": "none"}
BASELINE = {"colour_space": "lab", "blur_sigma": 1.0, "method": "kmeans", "k": 3, "nucleus_rank": 0}


class SegmentationConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(
        type="synthetic", n_per_class=15, realism={"noise": 0.06, "illumination": 0.3, "blur": 1.0, "jpeg_quality": 60}))
    split: SplitConfig = SplitConfig(test_size=0.3, folds=1, val_size=0.5)
    target: Literal["nucleus", "cell"] = "nucleus"
    score: Literal["mean", "dice", "iou", "ssim"] = "mean"
    max_images: int = Field(60, ge=1, description="images of the search part scored per candidate")
    stain_reference: Optional[str] = Field(None, description="image file to normalise to (default: search-part images)")
    defaults: dict[str, Any] = Field(default_factory=dict)


# ---- features and clusterings (cached) ---------------------------------------------------------------
def pixel_features(image: np.ndarray, space: str, blur: float) -> np.ndarray:
    """(H, W, 3) colour features scaled to about [0, 1] per channel, after a Gaussian blur."""
    img = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    if blur > 0:
        img = ndimage.gaussian_filter(img, (blur, blur, 0))
    if space == "hsv":
        return color.rgb2hsv(img)
    if space == "lab":
        lab = color.rgb2lab(img)
        return np.stack([lab[..., 0] / 100.0, (lab[..., 1] + 128) / 255.0, (lab[..., 2] + 128) / 255.0], -1)
    return img


def darkness(centres: np.ndarray, space: str) -> np.ndarray:
    """Higher = darker, for cluster centres in the given colour space."""
    if space == "lab":
        return 1 - centres[:, 0]
    if space == "hsv":
        return 1 - centres[:, 2]
    return 1 - centres.mean(axis=1)


def kmeans_labels(feats: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means of the pixel colours (fitted on up to 1,024 pixels, then every pixel assigned)."""
    flat = feats.reshape(-1, 3)
    rng = np.random.default_rng(seed)
    fit_on = flat if len(flat) <= 1024 else flat[rng.choice(len(flat), 1024, replace=False)]
    km = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(fit_on)
    return km.predict(flat).reshape(feats.shape[:2]), km.cluster_centers_


def pivot_growing(feats: np.ndarray, k: int, T: float, max_iter: int, epsilon: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pivot-growing segmentation (vectorised; no per-pixel Python loop).

    Pivots are k-medoids of the pixel colours (squared Euclidean distance) on a subsample;
    pivot ``j`` then takes the pixels within squared distance ``T`` of it that are spatially
    connected to pixels of its own medoid cluster. Unclaimed pixels get label -1.
    """
    rng = np.random.default_rng(seed)
    flat = feats.reshape(-1, 3)
    sample = flat[rng.choice(len(flat), size=min(len(flat), 800), replace=False)]
    medoids = sample[rng.choice(len(sample), size=k, replace=False)]
    for _ in range(max_iter):
        assign = ((sample[:, None, :] - medoids[None]) ** 2).sum(-1).argmin(1)
        new = medoids.copy()
        for j in range(k):
            members = sample[assign == j]
            if len(members):
                cost = ((members[:, None, :] - members[None]) ** 2).sum(-1).sum(1)
                new[j] = members[cost.argmin()]
        moved = np.sqrt(((new - medoids) ** 2).sum(-1)).max()
        medoids = new
        if moved <= epsilon:
            break
    d2 = ((flat[:, None, :] - medoids[None]) ** 2).sum(-1)  # (pixels, k)
    nearest = d2.argmin(1).reshape(feats.shape[:2])
    labels = np.full(feats.shape[:2], -1)
    order = np.argsort(-darkness(medoids, "rgb"))  # dark pivots claim first
    for j in order:
        grow = (d2[:, j] <= T).reshape(feats.shape[:2])
        comps, _ = ndimage.label(grow)
        seeds = np.unique(comps[grow & (nearest == j)])
        region = np.isin(comps, seeds[seeds > 0]) & (labels < 0)
        labels[region] = j
    return labels, medoids


def cluster(image: np.ndarray, space: str, blur: float, method: str, k: int, T: float, max_iter: int,
            epsilon: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centres) of one image: k-means or pivot-growing labels and their colour centres, or
    for ``otsu`` the darkness map and its Otsu threshold."""
    feats = pixel_features(image, space, blur)
    if method == "kmeans":
        return kmeans_labels(feats, k, seed)
    if method == "pgs":
        return pivot_growing(feats, k, T, max_iter, epsilon, seed)
    dark = 1 - feats[..., 0] if space == "lab" else 1 - feats[..., 2] if space == "hsv" else 1 - feats.mean(-1)
    return dark, np.array([filters.threshold_otsu(dark)])


def cluster_key(p: Mapping[str, Any]) -> tuple:
    """The arguments of :func:`cluster` (after the image) that a parameter set decides; settings the
    chosen method does not use are normalised so that they do not split the cache."""
    method = p["method"]
    return (p["colour_space"], round(float(p["blur_sigma"]), 6), method, int(p["k"]) if method != "otsu" else 0,
            float(p["T"]) if method == "pgs" else 0.0, int(p["max_iter"]) if method == "pgs" else 0,
            float(p["epsilon"]) if method == "pgs" else 0.0)


def nucleus_mask(clustered: tuple[np.ndarray, np.ndarray], p: Mapping[str, Any]) -> np.ndarray:
    """The nucleus mask of a clustering: the cluster of darkness rank ``nucleus_rank`` (or the Otsu
    side, shifted by ``threshold_offset``), then opening, closing, small objects and holes."""
    labels, centres = clustered
    method = p["method"]
    if method == "otsu":
        mask = labels > centres[0] + float(p["threshold_offset"])
    else:
        space = "rgb" if method == "pgs" else p["colour_space"]
        rank = min(int(p["nucleus_rank"]), len(centres) - 1)
        mask = labels == np.argsort(-darkness(centres, space))[rank]
    if int(p["opening"]) > 0:
        mask = ndimage.binary_opening(mask, morphology.disk(int(p["opening"])))
    if int(p["closing"]) > 0:
        mask = ndimage.binary_closing(mask, morphology.disk(int(p["closing"])))
    if int(p["min_size"]) > 0:
        mask = morphology.remove_small_objects(mask, max_size=int(p["min_size"]))
    if p["fill_holes"]:
        mask = ndimage.binary_fill_holes(mask)
    return mask


# ---- the objective -------------------------------------------------------------------------------
class SegmentationObjective(Objective):
    deterministic = True  # seeded: the same config scores the same
    Config = SegmentationConfig
    config: SegmentationConfig
    primary = "error"  # 1 - score on the search part's images
    VALUES = {"seconds_per_image": "minimize"}
    METRICS = ("dice", "iou", "ssim")

    @classmethod
    def value_meaning(cls, config=None) -> str:
        score = getattr(config, "score", "mean")
        return "1 - mean of Dice, IoU and SSIM" if score == "mean" else f"1 - {score}"

    def __init__(self, config=None, *, space=None, seed=0, objectives=None):
        super().__init__(config, space=space, seed=seed, objectives=objectives)
        self._images = None
        self._cluster = lru_cache(maxsize=4096)(self._cluster_uncached)

    def check_space(self, space) -> list[str]:
        return self.unused(space, DEFAULTS, "segmentation")

    def default_params(self) -> dict[str, Any]:
        return {**DEFAULTS, **self.config.defaults}

    def prepare(self) -> None:
        if self._images is not None:
            return
        data = prepare_images(self.config, self.seed, classify=False, needs_masks="the segmentation objective needs "
                              "masks (dataset type pairs or synthetic)")
        ds, splits = data.ds, data.splits
        self.prepared = data
        self._stained = data.stained
        idx = splits.search[: self.config.max_images]
        self.split_sizes = {**data.sizes(), "scored": len(idx), "folds": 0}
        self._set_images(ds, idx)
        self._test = (ds, splits.test)

    def _set_images(self, ds, idx) -> None:
        self._images = [ds.images[i] for i in idx]
        self._truth = [(ds.masks[i] == 2) if self.config.target == "nucleus" else (ds.masks[i] >= 1) for i in idx]
        self._ids = [int(i) for i in idx]
        self._cluster.cache_clear()

    def source(self, i: int, stain: str, size: int, resize: str) -> np.ndarray:
        """Image ``i`` in the candidate's stain, at its own size (``size`` 0) or placed in a square."""
        img = self._stained.images(stain)[self._ids[i]]
        return img if size <= 0 else square_image(img, size, resize)

    def _cluster_uncached(self, i: int, stain: str, size: int, resize: str, space: str, blur: float, method: str,
                          k: int, T: float, max_iter: int, epsilon: float) -> tuple[tuple[np.ndarray, np.ndarray], float]:
        image = self.source(i, stain, size, resize)
        start = time.perf_counter()
        out = cluster(image, space, blur, method, k, T, max_iter, epsilon, self.seed)
        return out, time.perf_counter() - start

    def segment(self, i: int, p: Mapping[str, Any]) -> np.ndarray:
        return self._segment_timed(i, p)[0]

    def _segment_timed(self, i: int, p: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        """Image ``i``'s nucleus mask and the seconds it costs (clustering as first measured + the rest)."""
        size = int(p["image_size"])
        clustered, seconds = self._cluster(i, p["stain"], size, p["resize"] if size > 0 else "", *cluster_key(p))
        start = time.perf_counter()
        mask = on_pixels(nucleus_mask(clustered, p), self._truth[i].shape, size, p["resize"])
        return mask, seconds + time.perf_counter() - start

    def scores(self, config: Mapping[str, Any]) -> dict[str, float]:
        p = {**DEFAULTS, **self.config.defaults, **config}
        per, seconds = [], 0.0
        for i, truth in enumerate(self._truth):
            mask, took = self._segment_timed(i, p)
            per.append(mask_scores(mask, truth))
            seconds += took
        per = np.array(per)
        out = {"dice": float(per[:, 0].mean()), "iou": float(per[:, 1].mean()), "ssim": float(per[:, 2].mean())}
        out["mean"] = (out["dice"] + out["iou"] + out["ssim"]) / 3
        out["seconds_per_image"] = seconds / len(self._truth)
        self._per = per
        return out

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        self.prepare()
        config, _ = options(config)
        s = self.scores(config)
        per = self._per.mean(1) if self.config.score == "mean" else self._per[:, ("dice", "iou", "ssim").index(self.config.score)]
        se = {"value_se": float(per.std(ddof=1) / np.sqrt(len(per)))} if len(per) > 1 else {}
        return Score(1.0 - s[self.config.score], {**s, **se, "images": len(self._truth), "split": "search part"})

    def test_scores(self, config: Mapping[str, Any]) -> dict[str, float]:
        """Scores on the held-out test split (for final reporting only, never during the search)."""
        with self._on_test():
            return self.scores(config)

    @contextlib.contextmanager
    def _on_test(self):
        self.prepare()
        ds, test = self._test
        saved = (self._images, self._truth, self._ids)
        try:
            self._set_images(ds, test)
            yield test
        finally:
            self._images, self._truth, self._ids = saved
            self._cluster.cache_clear()

    def fit_final(self, params: Mapping[str, Any], *, on_step=None) -> Fitted:
        """Nothing is fitted: the pipeline is its parameters (and the search part's stain reference)."""
        p = {**DEFAULTS, **self.config.defaults, **params}
        self.prepare()
        model = SegmentationModel({"params": {k: p[k] for k in DEFAULTS}, "target": self.config.target},
                                  classes=[], stain=self.prepared.stained.normaliser(p["stain"]), seed=self.seed)
        return Fitted(model, facts={"pipeline": {k: p[k] for k in DEFAULTS}})


def on_pixels(mask: np.ndarray, shape: tuple[int, int], size: int, resize: str) -> np.ndarray:
    """A mask made on a ``size`` square (``size`` 0: on the image itself) back on the image's pixels."""
    if size <= 0:
        return mask
    h, w = shape
    return (from_square(torch.from_numpy(mask.astype(np.float32))[None], h, w, resize)[0] > 0.5).numpy()


def segment_image(image: np.ndarray, p: Mapping[str, Any], seed: int) -> np.ndarray:
    """The nucleus mask of one (stain-normalised) image under the pipeline ``p``, on its own pixels."""
    size = int(p["image_size"])
    src = image if size <= 0 else square_image(image, size, p["resize"])
    return on_pixels(nucleus_mask(cluster(src, *cluster_key(p), seed), p), image.shape[:2], size, p["resize"])


class SegmentationModel(FittedModel):
    """A classical segmentation pipeline: its parameters and the stain reference of the search part."""

    kind, task = "segmentation", "segmentation"

    def run(self, images):
        label = NUCLEUS if self.spec["target"] == "nucleus" else CELL
        return Prediction(masks=[segment_image(im, self.spec["params"], self.seed).astype(np.uint8) * label
                                 for im in images])

    def describe(self):
        p = self.spec["params"]
        return {"input": {"image_size": p["image_size"], "resize": p["resize"]}, "target": self.spec["target"]}


SegmentationObjective.Model = SegmentationModel  # what train_final fits and optileuk predict applies
