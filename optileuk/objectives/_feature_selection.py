"""``feature_selection``: which deep + hand-crafted features to keep (Sahlol et al. 2020 style).

Features: the global-average-pooled output of a CNN trunk trained on each fold's *training* part
(or loaded once from a local ``weights`` file: a ``state_dict`` of :class:`optileuk.models.DKNN`),
plus hand-crafted colour / texture / shape features. The mask parameter (``mask_param``, with
``length: auto``) gets its length from the feature count.

Fitness (minimised): ``alpha * error + (1 - alpha) * selected / total`` with ``error = 1 -
balanced accuracy`` of the classifier over the validation folds of the search part; selecting no
feature gives the worst fitness, 1. A population of masks is scored in one vectorised pass for
KNN (batched masked distances in torch); SVM and logistic regression fit one model per mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from optileuk.data import DatasetConfig, Resize, SplitConfig, Stain, SyntheticData, cached
from optileuk.errors import ConfigError, Problem
from optileuk.features import FEATURE_NAMES, handcrafted_features
from optileuk.models import DKNN
from optileuk.objectives._augment import TrainAugment
from optileuk.objectives._base import ClassifiesCells, Device, Objective, ObjectiveConfig, Score, prepare_step
from optileuk.objectives._final import Fitted
from optileuk.objectives._handcrafted import build_classifier, classify
from optileuk.folds import OOF, REPEAT, options
from optileuk.objectives._inputs import cv_score, prepare_images, selection_mask
from optileuk.objectives._model import FittedModel
from optileuk.objectives._torch import fit, image_tensor, load_weights, resolve_device, seeded
from optileuk.objectives._trunk import load_trunk, trunk_net, trunk_spec


class FeatureSelectionConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(type="synthetic"))
    split: SplitConfig = SplitConfig(test_size=0.2, folds=3)
    features: list[Literal["deep", "handcrafted"]] = Field(default_factory=lambda: ["deep", "handcrafted"], min_length=1)
    weights: Optional[str] = Field(None, description="a trunk file, a dknn run folder (optileuk train) or a DKNN state_dict to take the trunk from (no training)")
    trunk_epochs: int = Field(8, ge=1)
    augment: TrainAugment = Field(TrainAugment(), description="training-only augmentation of the trunk, on the device")
    image_size: int = Field(32, ge=8, le=512)
    resize: Resize = Field("pad", description="how images of other sizes and shapes become image_size squares")
    stain: Stain = Field("none", description="stain normalisation before features (none | reinhard | macenko)")
    stain_reference: Optional[str] = Field(None, description="image file to normalise to (default: search-part images)")
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    device: Device = "auto"
    classifier: Literal["knn", "svm", "logreg"] = "knn"
    n_neighbors: int = Field(5, ge=1)
    alpha: float = Field(0.99, ge=0, le=1)
    mask_param: str = "features"


def knn_predict_many(xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, masks: torch.Tensor, k: int,
                     n_classes: int, chunk: int = 8) -> torch.Tensor:
    """KNN predictions for many feature masks at once: (P, n_val).

    Distances on the selected features only: ``|x-y|^2 = x^2.m + y^2.m - 2 (x*m).y`` for every
    mask ``m`` in one batched product. Ties in the vote go to the smallest label (as scikit-learn).
    """
    out = []
    sq_tr = (xtr**2) @ masks.T  # (n_train, P); |x_val|^2 is the same for every neighbour: not needed to rank
    for s in range(0, len(masks), chunk):
        m = masks[s:s + chunk]
        d = torch.matmul(xva[None, :, :] * m[:, None, :], xtr.T)  # (p, n_val, n_train) cross terms
        d.mul_(-2).add_(sq_tr[:, s:s + chunk].T[:, None, :])
        nb = d.topk(min(k, xtr.shape[0]), dim=2, largest=False).indices  # (p, n_val, k)
        votes = F.one_hot(ytr[nb], n_classes).sum(2)  # (p, n_val, classes)
        out.append(votes.argmax(2))
    return torch.cat(out)


class FeatureSelectionObjective(ClassifiesCells, Objective):
    deterministic = True  # seeded: the same config scores the same
    Config = FeatureSelectionConfig
    config: FeatureSelectionConfig
    primary = "fitness"  # alpha * error + (1 - alpha) * share kept
    batches = True  # one KNN distance computation per fold for a whole population of masks
    VALUES = {"error": "minimize", "selected_share": "minimize"}  # 1 - balanced accuracy; features kept / all
    METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "selected_share")

    @classmethod
    def value_meaning(cls, config=None) -> str:
        a = getattr(config, "alpha", 0.99)
        return f"{a:g} x (1 - balanced accuracy) + {1 - a:g} x share of features kept"

    def __init__(self, config=None, *, space=None, seed=0, objectives=None):
        super().__init__(config, space=space, seed=seed, objectives=objectives)
        self._folds = None  # (x_train, y_train, x_val, y_val) of every fold of every repeat
        self._extra: dict[int, list] = {}  # the same for a new repeat (a race)

    resamples = predicts_oof = True

    def default_params(self) -> dict[str, Any]:
        self.prepare()
        return {self.config.mask_param: np.ones(self.n_features, dtype=bool)}

    def check_space(self, space) -> list[str]:
        name = self.config.mask_param
        out = []
        if name not in space.params or space.params[name].type != "mask":
            out.append(f"needs a mask parameter named '{name}' (objective.mask_param), e.g. "
                       f"{name}: {{type: mask, length: auto}}")
        out += [f"parameter '{n}' is not used by the feature_selection objective" for n in space.params if n != name]
        return out

    def mask_lengths(self) -> dict[str, int]:
        self.prepare()
        return {self.config.mask_param: self.n_features}

    # ---- features (computed once, cached on disk) ---------------------------------------------------
    def prepare(self) -> None:
        if self._folds is not None:
            return
        c = self.config
        data = prepare_images(c, self.seed)
        self._data = self.prepared = data
        self.split_sizes = data.sizes()
        self._folds = cached("selection-features", self._key(), lambda: self._fold_features(data, data.folds()))
        self.n_classes = len(data.ds.classes)
        self.n_features = self._folds[0][0].shape[1]

    def _key(self, repeat: int | None = None) -> dict[str, Any]:
        c = self.config
        key = {"cfg": c.model_dump(mode="json"), "paths": self._data.ds.paths, "seed": self.seed, "hand": FEATURE_NAMES,
               "weights_mtime": Path(c.weights).stat().st_mtime_ns if c.weights else None}
        return key if repeat is None else {**key, "repeat": repeat}

    def folds(self, repeat: int | None) -> list:
        """The features of every fold (``None``), or of the folds of a new ``repeat`` (computed once)."""
        if repeat is None:
            return self._folds
        if repeat < self._data.splits.repeats:
            k = self._data.splits.per_repeat
            return self._folds[repeat * k:(repeat + 1) * k]
        if repeat not in self._extra:
            folds = self._data.folds(repeat)
            self._extra[repeat] = cached("selection-features", self._key(repeat),
                                         lambda: self._fold_features(self._data, folds))
        return self._extra[repeat]

    def _fold_features(self, data, splits_folds) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        c = self.config
        ds = data.ds
        images = data.stained.images(c.stain)
        if "handcrafted" in c.features:
            prepare_step(0, 1, f"hand-crafted features of {len(images)} images")
        hand = handcrafted_features(images) if "handcrafted" in c.features else None
        x_all = image_tensor(images, c.image_size, c.resize) if "deep" in c.features else None
        device = resolve_device(c.device)
        fixed = self._load_trunk(len(ds.classes)) if ("deep" in c.features and c.weights) else None
        k = data.splits.per_repeat
        folds = []
        for j, fold in enumerate(splits_folds):
            parts = []
            if "deep" in c.features:
                net = fixed
                if net is None:
                    total = len(splits_folds) * c.trunk_epochs
                    net = self._train_trunk(x_all[fold.train], ds.labels[fold.train], len(ds.classes),
                                            self.seed + fold.repeat * k + j % k,
                                            lambda e, j=j: prepare_step(j * c.trunk_epochs + e + 1, total,
                                                                        f"CNN trunk epochs ({len(splits_folds)} folds)"))
                parts.append(deep_features(net, x_all, device))
            if hand is not None:
                parts.append(hand)
            x = np.concatenate(parts, axis=1)
            mu, sd = x[fold.train].mean(0), x[fold.train].std(0) + 1e-8  # scaled with training statistics only
            x = (x - mu) / sd
            folds.append((x[fold.train], ds.labels[fold.train], x[fold.val], ds.labels[fold.val]))
        return folds

    def _train_trunk(self, x: torch.Tensor, y: np.ndarray, n_classes: int, seed: int, on_epoch=None) -> DKNN:
        c = self.config
        with seeded(seed):
            net = DKNN(n_classes, image_size=c.image_size, widths=tuple(c.widths), ranks=(2, 1))
        fit(net, x, torch.from_numpy(y), loss_fn=F.cross_entropy, epochs=c.trunk_epochs, batch_size=64, lr=3e-3,
            weight_decay=1e-3, device=resolve_device(c.device), seed=seed, augment=c.augment.batch(), on_epoch=on_epoch)
        return net

    def _load_trunk(self, n_classes: int) -> DKNN:
        return load_trunk(self.config.weights, n_classes, self.config.image_size, self.config.widths)

    # ---- evaluation --------------------------------------------------------------------------------
    def _score(self, preds_per_fold: list[np.ndarray], mask: np.ndarray, repeat: int | None, oof: bool) -> Score:
        n_sel = int(mask.sum())
        if n_sel == 0:
            return Score(1.0, {"selected": 0, "total": self.n_features, "balanced_accuracy": 0.0, "error": 1.0,
                               "selected_share": 0.0,
                               "accuracy": 0.0, "macro_f1": 0.0, "note": "no feature selected: worst fitness"})
        a, share = self.config.alpha, n_sel / self.n_features
        value, attrs = cv_score(self._data, self._data.folds(repeat), preds_per_fold, self.seed, oof=oof,
                                value_of=lambda error: a * error + (1 - a) * share)
        return Score(value, {"selected": n_sel, "total": self.n_features, **attrs,
                             "error": 1 - attrs["balanced_accuracy"], "selected_share": share})

    def _mask(self, config: Mapping[str, Any]) -> np.ndarray:
        """The candidate's mask; none given (the objective's defaults): every feature."""
        if self.config.mask_param not in config:
            return np.ones(self.n_features, dtype=bool)
        return selection_mask(config[self.config.mask_param], self.n_features, self.config.mask_param)

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        return self.evaluate_many([config])[0]

    def evaluate_many(self, configs: list[Mapping[str, Any]]) -> list[Score]:
        self.prepare()
        split = [options(c) for c in configs]
        out: list[Score | None] = [None] * len(configs)
        for key in {(o.get(REPEAT), bool(o.get(OOF))) for _, o in split}:  # one pass per set of folds
            idx = [i for i, (_, o) in enumerate(split) if (o.get(REPEAT), bool(o.get(OOF))) == key]
            for i, score in zip(idx, self._evaluate_on([split[i][0] for i in idx], *key)):
                out[i] = score
        return out

    def _evaluate_on(self, configs: list[Mapping[str, Any]], repeat: int | None, oof: bool) -> list[Score]:
        folds = self.folds(repeat)
        masks = np.stack([self._mask(c) for c in configs])
        preds = [[None] * len(folds) for _ in configs]
        live = np.flatnonzero(masks.any(1))
        for f, (xtr, ytr, xva, yva) in enumerate(folds):
            if not len(live):
                break
            if self.config.classifier == "knn":
                p = knn_predict_many(torch.from_numpy(xtr).double(), torch.from_numpy(ytr), torch.from_numpy(xva).double(),
                                     torch.from_numpy(masks[live]).double(), self.config.n_neighbors, self.n_classes)
                for j, i in enumerate(live):
                    preds[i][f] = p[j].numpy()
            else:
                for i in live:
                    m = masks[i]
                    model = build_classifier({}, self.config.classifier, self.seed).fit(xtr[:, m], ytr)
                    preds[i][f] = model.predict(xva[:, m])
        return [self._score(preds[i], masks[i], repeat, oof) for i in range(len(configs))]

    def fit_final(self, params: Mapping[str, Any], *, on_step=None) -> Fitted:
        """Trunk and classifier fitted on the whole search part, the mask applied."""
        c = self.config
        self.prepare()
        data = self._data
        ds, splits = data.ds, data.splits
        mask = self._mask(params)
        if not mask.any():
            raise ConfigError([Problem("", f"params.{c.mask_param}", "selects no feature: nothing to train on", 0)])
        search = splits.search
        images = [data.stained.images(c.stain)[i] for i in search]
        net = None
        if "deep" in c.features:
            net = self._load_trunk(len(ds.classes)) if c.weights else self._train_trunk(
                image_tensor(images, c.image_size, c.resize), ds.labels[search], len(ds.classes), self.seed,
                (lambda e: on_step(e + 1, c.trunk_epochs, "trunk epochs")) if on_step else None)
        spec = {"features": list(c.features), "image_size": c.image_size, "resize": c.resize,
                "trunk": trunk_spec(net, len(ds.classes), c.image_size) if net is not None else None}
        model = FeatureSelectionModel(spec, classes=ds.classes, stain=data.stained.normaliser(c.stain), seed=self.seed,
                                      device=c.device, net=net)
        x = model.raw_features(images)
        model.mu, model.sd, model.mask = x.mean(0), x.std(0) + 1e-8, mask  # training statistics only
        model.classifier = build_classifier({"n_neighbors": c.n_neighbors}, c.classifier, self.seed).fit(
            ((x - model.mu) / model.sd)[:, mask], ds.labels[search])
        return Fitted(model, facts={"search_images": len(search), "selected": int(mask.sum())},
                      metrics={"selected": int(mask.sum()), "total": int(mask.size)}, predictions={"mask": mask})


def deep_features(net: DKNN, x: torch.Tensor, device) -> np.ndarray:
    """The pooled trunk features of ``x`` (N, 3, S, S), 256 images at a time."""
    net.to(device).eval()
    with torch.no_grad():
        return torch.cat([net.features(x[i:i + 256].to(device)).cpu() for i in range(0, len(x), 256)]).numpy()


class FeatureSelectionModel(FittedModel):
    """Deep (trunk) and hand-crafted features, scaled with the search part's statistics, the
    selected ones kept, classified."""

    kind, task = "feature_selection", "classification"

    def __init__(self, spec, *, classes, stain, seed=0, device="auto", net=None, mu=None, sd=None, mask=None,
                 classifier=None):
        super().__init__(spec, classes=classes, stain=stain, seed=seed, device=device)
        if net is None and "deep" in spec["features"]:
            net = trunk_net(spec["trunk"])
        self.net, self.mu, self.sd, self.mask, self.classifier = net, mu, sd, mask, classifier

    def raw_features(self, images: list[np.ndarray]) -> np.ndarray:
        parts = []
        if self.net is not None:
            x = image_tensor(images, int(self.spec["image_size"]), self.spec["resize"])
            parts.append(deep_features(self.net, x, self.torch_device))
        if "handcrafted" in self.spec["features"]:
            parts.append(handcrafted_features(images))
        return np.concatenate(parts, axis=1)

    def run(self, images):
        x = (self.raw_features(images) - self.mu) / self.sd
        return classify(self.classifier, x[:, self.mask], len(self.classes))

    def tensors(self):
        return {} if self.net is None else {f"trunk.{k}": v.detach().cpu() for k, v in self.net.state_dict().items()}

    def arrays(self):
        return {"mu": self.mu, "sd": self.sd, "mask": self.mask}

    def estimators(self):
        return {"classifier": self.classifier}

    @classmethod
    def restore(cls, spec, *, classes, stain, seed, device, tensors, arrays, estimators):
        model = cls(spec, classes=classes, stain=stain, seed=seed, device=device, mu=arrays["mu"], sd=arrays["sd"],
                    mask=arrays["mask"].astype(bool), classifier=estimators["classifier"])
        if model.net is not None:
            load_weights(model.net, tensors, "trunk.")
        return model

    def describe(self):
        return {"input": {"image_size": self.spec["image_size"], "resize": self.spec["resize"]},
                "features": {"groups": self.spec["features"], "selected": [int(i) for i in np.flatnonzero(self.mask)],
                             "total": int(self.mask.size)}}


FeatureSelectionObjective.Model = FeatureSelectionModel  # what train_final fits and optileuk predict applies
