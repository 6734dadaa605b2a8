"""``pipeline``: segment the nucleus and the cell, measure them, classify — tuned as one candidate.

A candidate carries every stage (any subset searchable; the rest take ``defaults``):

1. **input**: ``stain`` (none | reinhard | macenko); images are placed in ``image_size`` squares
   (``resize``) for segmentation and measurement;
2. **segmentation** (``segmenter: classical``): the nucleus as in the ``segmentation`` objective
   (``colour_space``, ``blur_sigma``, ``method`` kmeans | pgs | otsu, ``k``, ``nucleus_rank``,
   ``T``, ``max_iter``, ``epsilon``, ``threshold_offset``, ``opening``, ``closing``, ``min_size``,
   ``fill_holes``); the cell as the pieces of the ``cell_rank + 1`` darkest of ``cell_k`` colour
   clusters that touch the nucleus, opened by ``cell_opening``. With ``segmenter: unet`` a U-Net
   (nucleus and cell channels, MONAI Dice+CE loss, training-only augmentation) is trained once per
   fold of the first repeat on that fold's training masks, and once on the whole search part for the
   final model. With two folds or more, every cell is measured on its *cross-fitted* masks (those of
   the U-Net whose fold held it out) in every fold, repeat and race, so repeats cost no U-Net; with
   one validation split, its U-Net segments every cell;
3. **measurements** (:mod:`optileuk.features._cells`): switches ``use_nucleus_shape``,
   ``use_cell_shape``, ``use_nucleus_colour``, ``use_cytoplasm_colour``, ``use_nucleus_texture``,
   ``use_cytoplasm_texture``, ``use_image`` (whole-crop colour/texture features) and ``use_deep``
   (the pooled features of a DKNN trunk loaded from the local ``weights`` file); a feature mask
   (``mask_param``, ``length: auto``) over all of them;
4. **classifier**: ``classifier`` (svm | logreg | knn | rf) and its settings, ``class_weight``,
   ``scaling`` (as the ``handcrafted`` objective).

The value is ``1 -`` the mean balanced accuracy over the validation folds of the search part.
Stages are cached: masks and measurements per segmentation setting (and fold, for the U-Net), so
a candidate that changes only the measurements, the mask or the classifier never segments again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from optileuk.data import DatasetConfig, Resize, SplitConfig, Stain, SyntheticData, cached_arrays
from optileuk.errors import ConfigError, Problem
from optileuk.features import CELL_FEATURES, FEATURE_NAMES, GROUPS, measure_cell
from optileuk.objectives._base import ClassifiesCells, Device, Objective, ObjectiveConfig, Score
from optileuk.objectives._final import Fitted
from optileuk.objectives._handcrafted import CLASSIFIER_DEFAULTS, build_classifier
from optileuk.folds import OOF, REPEAT, options
from optileuk.objectives._inputs import check_defaults, cv_score, prepare_images, selection_mask
from optileuk.objectives._segmentation import DEFAULTS as SEG_DEFAULTS, cluster, cluster_key
from optileuk.objectives._torch import resolve_device
from optileuk.objectives._trunk import load_trunk, trunk_spec
from optileuk.objectives._pipeline_model import (PipelineModel, cell_clusters, classical_masks, compact, image_features,
                                                 segmenter_net, square_u8, train_segmenter, trunk_features,
                                                 unet_masks)

SEGMENT = {**{k: SEG_DEFAULTS[k] for k in ("colour_space", "blur_sigma", "method", "k", "nucleus_rank", "T", "max_iter",
                                           "epsilon", "threshold_offset", "opening", "closing")},
           "min_size": 20, "fill_holes": True, "cell_k": 3, "cell_rank": 1, "cell_opening": 2}
USE = {f"use_{g}": True for g in GROUPS} | {"use_image": False, "use_deep": True}
DEFAULTS = {**SEGMENT, **USE, "classifier": "svm", **CLASSIFIER_DEFAULTS}
INPUTS = ("stain",)
_SEGMENTERS: OrderedDict[str, dict] = OrderedDict()  # final U-Nets trained in this process, by what they were trained on


class UNetSegmenter(BaseModel):
    """The U-Net of ``segmenter: unet``: fixed for the study, trained once per fold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    depth: int = Field(3, ge=1, le=6)
    image_size: int = Field(96, ge=16, le=1024, description="network input side (multiple of 2**depth)")
    base: int = Field(16, ge=4, le=128)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=2)
    lr: float = Field(3e-3, gt=0)

    @field_validator("image_size")
    @classmethod
    def _size(cls, v: int, info: ValidationInfo) -> int:
        depth = info.data.get("depth", 3)
        if v % 2 ** depth:
            raise ValueError(f"must be divisible by 2**depth = {2 ** depth}, got {v}")
        return v


class PipelineConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(type="synthetic", n_per_class=40))
    split: SplitConfig = SplitConfig(test_size=0.2, folds=3)
    image_size: int = Field(128, ge=16, le=1024, description="side of the square images are segmented and measured at")
    resize: Resize = Field("pad", description="how images become image_size squares (pad | crop | stretch)")
    stain: Stain = Field("none", description="stain normalisation (searchable as stain)")
    stain_reference: Optional[str] = Field(None, description="image file to normalise to (default: search-part images)")
    segmenter: Literal["classical", "unet"] = "classical"
    unet: UNetSegmenter = UNetSegmenter()
    weights: Optional[str] = Field(None, description="a trunk file, a dknn run folder (optileuk train) or a DKNN state_dict whose trunk gives deep features")
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1, description="trunk widths of weights")
    trunk_size: int = Field(32, ge=8, le=512, description="input side of the trunk of weights")
    device: Device = "auto"
    mask_param: str = "features"
    defaults: dict[str, Any] = Field(default_factory=dict, description="values of parameters not searched")


class PipelineObjective(ClassifiesCells, Objective):
    deterministic = True  # seeded: the same config scores the same
    Config = PipelineConfig
    config: PipelineConfig

    def __init__(self, config=None, *, space=None, seed=0, objectives=None):
        super().__init__(config, space=space, seed=seed, objectives=objectives)
        check_defaults(self.config.defaults, (*DEFAULTS, *INPUTS), "pipeline")
        self.segmentations = 0  # segmentation passes over the images (the stage cache's test counts them)
        self._features: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._oof: dict[str, np.ndarray] = {}
        self._fixed: dict[tuple[str, str], np.ndarray] = {}
        self._cluster = lru_cache(maxsize=4096)(self._cluster_uncached)
        self._cells = lru_cache(maxsize=4096)(self._cell_clusters_uncached)

    resamples = predicts_oof = True

    # ---- parameters ---------------------------------------------------------------------------------
    def default_params(self) -> dict[str, Any]:
        return self.params({})

    def params(self, candidate: Mapping[str, Any]) -> dict[str, Any]:
        return {**DEFAULTS, "stain": self.config.stain, **self.config.defaults,
                **{k: v for k, v in candidate.items() if k != self.config.mask_param}}

    def check_space(self, space) -> list[str]:
        name = self.config.mask_param
        out = self.unused(space, (*DEFAULTS, *INPUTS, name), "pipeline")
        if name in space.params and space.params[name].type != "mask":
            out.append(f"'{name}' (objective.mask_param) must be a mask parameter, e.g. {name}: {{type: mask, length: auto}}")
        if self.config.segmenter == "unet":
            out += [f"parameter '{n}' sets the classical segmentation, but objective.segmenter is unet"
                    for n in space.params if n in SEGMENT]
        if "use_deep" in space.params and not self.config.weights:
            out.append("parameter 'use_deep' needs objective.weights (a local DKNN state_dict for the trunk)")
        return out

    def mask_lengths(self) -> dict[str, int]:
        return {self.config.mask_param: len(self.feature_names)}

    @property
    def feature_names(self) -> list[str]:
        deep = [f"deep_{i}" for i in range(self.config.widths[-1])] if self.config.weights else []
        return [*CELL_FEATURES, *(f"image_{n}" for n in FEATURE_NAMES), *deep]

    def groups(self) -> dict[str, np.ndarray]:
        """Column indices of each ``use_*`` switch."""
        names = self.feature_names
        out = {f"use_{g}": np.array([names.index(n) for n in cols]) for g, cols in GROUPS.items()}
        out["use_image"] = np.array([i for i, n in enumerate(names) if n.startswith("image_")])
        out["use_deep"] = np.array([i for i, n in enumerate(names) if n.startswith("deep_")], dtype=int)
        return out

    def columns(self, p: Mapping[str, Any], candidate: Mapping[str, Any]) -> np.ndarray:
        """The feature columns a candidate uses: its switched-on groups, within its mask."""
        on = np.zeros(len(self.feature_names), bool)
        for switch, cols in self.groups().items():
            if p[switch] and len(cols):
                on[cols] = True
        name = self.config.mask_param
        if name in candidate:
            on &= selection_mask(candidate[name], len(self.feature_names), name)
        return on

    # ---- data ---------------------------------------------------------------------------------------
    def prepare(self) -> None:
        if self._data is not None:
            return
        c = self.config
        data = prepare_images(c, self.seed, needs_masks="objective.segmenter unet needs nucleus/cell masks to train "
                              "on (dataset type pairs or synthetic); use segmenter: classical"
                              if c.segmenter == "unet" else None)
        self.split_sizes = data.sizes()
        self._data = self.prepared = data
        self._squares: dict[str, list[np.ndarray]] = {}

    def squares(self, stain: str) -> list[np.ndarray]:
        """Every image in ``stain``, placed in an ``image_size`` square (once per stain)."""
        if stain not in self._squares:
            c = self.config
            self._squares[stain] = [square_u8(im, c.image_size, c.resize) for im in self._data.stained.images(stain)]
        return self._squares[stain]

    # ---- stage 1: masks -----------------------------------------------------------------------------
    def _cluster_uncached(self, i: int, stain: str, key: tuple) -> tuple[np.ndarray, np.ndarray]:
        return compact(cluster(self.squares(stain)[i], *key, self.seed))

    def _cell_clusters_uncached(self, i: int, stain: str, k: int, blur: float) -> tuple[np.ndarray, np.ndarray]:
        return cell_clusters(self.squares(stain)[i], k, blur, self.seed)

    def classical_masks(self, i: int, p: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(nucleus, cell) masks of image ``i`` at the working size (clusterings cached)."""
        return classical_masks(self._cluster(i, p["stain"], cluster_key(p)),
                               self._cells(i, p["stain"], int(p["cell_k"]), round(float(p["blur_sigma"]), 6)), p)

    def segment_key(self, p: Mapping[str, Any], fold: str) -> tuple:
        if self.config.segmenter == "unet":
            return ("unet", p["stain"], fold)
        return ("classical", p["stain"], *cluster_key(p), int(p["nucleus_rank"]), float(p["threshold_offset"]),
                int(p["opening"]), int(p["closing"]), int(p["min_size"]), bool(p["fill_holes"]), int(p["cell_k"]),
                int(p["cell_rank"]), int(p["cell_opening"]), round(float(p["blur_sigma"]), 6))

    @staticmethod
    def fold_key(train: np.ndarray) -> str:
        """Which U-Net segments for a fold: the one trained on exactly these cells (any repeat, any race)."""
        return hashlib.sha1(np.asarray(train, dtype=np.int64).tobytes()).hexdigest()[:16]

    def _train_segmenter(self, stain: str, train_idx: np.ndarray) -> torch.nn.Module:
        """The study's U-Net trained on ``train_idx``; a network trained before in this process on the same
        cells with the same settings and seed is taken instead (an assessment's rules and untuned reference
        share their final segmenter: training is seeded, so it would be the same network)."""
        c = self.config
        key = json.dumps({"dataset": c.dataset.model_dump(mode="json"), "unet": c.unet.model_dump(), "seed": self.seed,
                          "size": c.image_size, "resize": c.resize, "stain": stain, "reference": c.stain_reference,
                          "train": np.asarray(train_idx).tolist(), "device": str(resolve_device(c.device))},
                         sort_keys=True)
        if key in _SEGMENTERS:
            _SEGMENTERS.move_to_end(key)
            net = segmenter_net(c.unet.model_dump())
            net.load_state_dict(_SEGMENTERS[key])
            return net.to(resolve_device(c.device))
        squares = self.squares(stain)
        net = train_segmenter([squares[i] for i in train_idx], [self._data.ds.masks[i] for i in train_idx],
                              c.unet.model_dump(), c.image_size, c.resize, resolve_device(c.device), self.seed)
        _SEGMENTERS[key] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        while len(_SEGMENTERS) > 8:
            _SEGMENTERS.popitem(last=False)
        return net

    def _oof_masks(self, stain: str) -> np.ndarray:
        """Cross-fitted masks: each search cell's (nucleus, cell) masks by the U-Net of the first repeat's
        fold that held it out (one U-Net per fold of that repeat, whatever the repeats and races)."""
        if stain not in self._oof:
            splits = self._data.splits
            out = None
            for fold in splits.folds[:splits.per_repeat]:
                every = self._fold_masks(stain, fold.train)
                out = np.zeros_like(every) if out is None else out
                out[fold.val] = every[fold.val]
            self._oof[stain] = out
        return self._oof[stain]

    def _unet_masks(self, stain: str, train_idx: np.ndarray) -> np.ndarray:
        """Train the study's U-Net on ``train_idx`` (dataset indices); (N, 2, S, S) boolean nucleus and
        cell masks of every image."""
        c = self.config
        net = self._train_segmenter(stain, train_idx)
        return unet_masks(net, self.squares(stain), c.unet.model_dump(), c.image_size, resolve_device(c.device))

    def masks(self, p: Mapping[str, Any], train, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(nucleus, cell) masks of images ``ids`` under the candidate's segmentation; with a U-Net, the
        one trained on the fold's training cells ``train`` (dataset indices; ``None``: the whole search part;
        ``"oof"``: each cell's cross-fitted masks, :meth:`_oof_masks`)."""
        self.segmentations += 1
        if self.config.segmenter == "classical":
            return [self.classical_masks(int(i), p) for i in ids]
        if isinstance(train, str):  # "oof": cross-fitted
            every = self._oof_masks(p["stain"])
        else:
            every = self._fold_masks(p["stain"], self._data.splits.search if train is None else np.asarray(train))
        return [(every[int(i), 0], every[int(i), 1]) for i in ids]

    def _fold_masks(self, stain: str, train: np.ndarray) -> np.ndarray:
        """(N, 2, S, S) masks of every image by the U-Net trained on ``train`` (cached on disk)."""
        ds = self._data.ds
        key = {"dataset": self.config.dataset.model_dump(mode="json"), "paths": ds.paths, "seed": self.seed,
               "unet": self.config.unet.model_dump(), "size": self.config.image_size, "resize": self.config.resize,
               "stain": stain, "reference": self.config.stain_reference, "train": np.asarray(train).tolist(), "v": 1}
        return cached_arrays("pipeline-unet-masks", key, lambda: self._unet_masks(stain, train))

    # ---- stage 2: measurements ----------------------------------------------------------------------
    def features(self, p: Mapping[str, Any], train, ids: np.ndarray) -> np.ndarray:
        """(len(ids), features) measurements under the candidate's segmentation (cached per setting); with
        a U-Net, the one trained on ``train`` (a fold's training cells, or ``"oof"``; classical: ignored)."""
        unet = self.config.segmenter == "unet" and train is not None
        fold = (train if isinstance(train, str) else self.fold_key(train)) if unet else "all"
        key = (self.segment_key(p, fold), tuple(int(i) for i in ids))
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        squares = self.squares(p["stain"])
        cells = np.stack([measure_cell(squares[int(i)], nuc, cell)
                          for i, (nuc, cell) in zip(ids, self.masks(p, train, ids))])
        parts = [cells, self._per_stain("image", p["stain"], self._image_features)[ids]]
        if self.config.weights:
            parts.append(self._per_stain("deep", p["stain"], self._deep_features)[ids])
        x = np.concatenate(parts, axis=1)
        self._features[key] = x
        while len(self._features) > 256:
            self._features.popitem(last=False)
        return x

    def _per_stain(self, what: str, stain: str, build) -> np.ndarray:
        """Features that do not depend on the segmentation, computed once per stain."""
        if (what, stain) not in self._fixed:
            self._fixed[(what, stain)] = build(stain)
        return self._fixed[(what, stain)]

    def _image_features(self, stain: str) -> np.ndarray:
        return image_features(self.squares(stain))

    def _trunk(self):
        c = self.config
        return load_trunk(c.weights, len(self._data.ds.classes), c.trunk_size, c.widths, "trunk_size").eval()

    def _deep_features(self, stain: str) -> np.ndarray:
        c = self.config
        return trunk_features(self._trunk(), self._data.stained.images(stain), c.trunk_size, c.resize)

    # ---- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        self.prepare()
        data = self._data
        ds, splits = data.ds, data.splits
        config, opts = options(config)
        p = self.params(config)
        cols = self.columns(p, config)
        if not cols.any():
            return Score(1.0, {"selected": 0, "total": int(cols.size), "balanced_accuracy": 0.0,
                               "note": "no measurement selected: worst value"})
        start = time.perf_counter()
        folds = data.folds(opts.get(REPEAT))
        unet = self.config.segmenter == "unet"
        crossed = unet and splits.per_repeat >= 2  # one U-Net per fold of the first repeat, its masks cross-fitted
        pos = lambda idx: np.searchsorted(splits.search, idx)  # noqa: E731
        preds = []
        for fold in folds:
            x = self.features(p, "oof" if crossed else fold.train if unet else None, splits.search)
            model = build_classifier(p, p["classifier"], self.seed).fit(x[pos(fold.train)][:, cols], ds.labels[fold.train])
            preds.append(model.predict(x[pos(fold.val)][:, cols]))
        return Score(*cv_score(data, folds, preds, self.seed, oof=opts.get(OOF, False),
                               extra={"selected": int(cols.sum()), "total": int(cols.size),
                                      "seconds_scored": time.perf_counter() - start}))

    def fit_final(self, params: Mapping[str, Any], *, on_step=None) -> Fitted:
        """Segment (the U-Net, if any, trained on the whole search part), measure and fit the classifier
        on the search part."""
        self.prepare()
        data, c = self._data, self.config
        ds, splits = data.ds, data.splits
        p = self.params(params)
        cols = self.columns(p, params)
        if not cols.any():
            raise ConfigError([Problem("", "params", "select no measurement: nothing to train on", 0)])
        segmenter = self._train_segmenter(p["stain"], splits.search) if c.segmenter == "unet" else None
        if on_step:
            on_step(1, 3, "segmenter ready")
        spec = {"image_size": c.image_size, "resize": c.resize, "segmenter": c.segmenter, "unet": c.unet.model_dump(),
                "trunk": trunk_spec(self._trunk(), len(ds.classes), c.trunk_size) if c.weights else None,
                "params": {k: p[k] for k in DEFAULTS},
                "columns": [int(i) for i in np.flatnonzero(cols)], "feature_names": self.feature_names}
        model = PipelineModel(spec, classes=ds.classes, stain=data.stained.normaliser(p["stain"]), seed=self.seed,
                              device=c.device, segmenter=segmenter, trunk=self._trunk() if c.weights else None)
        x, _ = model.features([data.stained.images(p["stain"])[i] for i in splits.search])
        if on_step:
            on_step(2, 3, "search part segmented and measured")
        model.classifier = build_classifier(p, p["classifier"], self.seed).fit(x[:, cols], ds.labels[splits.search])
        if on_step:
            on_step(3, 3, "classifier fitted")
        names = np.array(self.feature_names)
        return Fitted(model, facts={"search_images": len(splits.search), "selected": int(cols.sum()),
                                    "segmenter": c.segmenter, "measurements": names[cols].tolist()},
                      metrics={"selected": int(cols.sum()), "total": int(cols.size)},
                      predictions={"features": names[cols]})


PipelineObjective.Model = PipelineModel  # what train_final fits and optileuk predict applies
