"""``dknn``: train a CNN with a Kronecker-factored head (DKNN) and score it on validation data.

Searchable parameters (any subset; defaults come from the config's ``defaults``):
``rank1``, ``rank2`` (Kronecker ranks of the two head layers, 0 = dense), ``hidden`` (width of the
head's hidden layer; default ``objective.hidden``), ``shape1`` (factor
shape of the first head layer as ``"m1xm2xn1xn2"``, or ``auto``), ``kron_conv_rank``,
``activation`` (prelu | relu: the ablation of PReLU), ``prelu_mode`` (shared | channel) and
``prelu_init`` (used with prelu only), ``lr``, ``weight_decay``, ``batch_size``,
``epochs``, ``dropout``, ``kron_lr_scale`` (the Kronecker factors' rate as a multiple of ``lr``,
default 1: Adam moves every weight by about the rate per step, and a factor's entries are several
times a dense weight's, so at one rate a Kronecker layer learns slower than a dense one),
``depth`` (residual blocks per trunk stage, 0 = the plain trunk), ``pool`` (the head's input:
``flatten`` or ``avg``, global average pooling), ``tta`` (test-time augmentation:
the scored predictions averaged over the 8 flips and right-angle rotations of each image; the
per-epoch values pruners see stay single-view), ``schedule`` (``onecycle``: the one-cycle
learning-rate schedule, so the last epoch, the one scored, is trained at a low rate;
``constant``), and the input: ``image_size``, ``resize`` (pad | crop | stretch: images of any size
and shape) and ``stain`` (none | reinhard | macenko), whose defaults are the
objective's keys of the same names. The value (``error``) is ``1 - balanced accuracy`` on the
validation split (reported after every epoch, so pruners work). Multi-objective studies
(``objectives: [error, head_params]``) add ``head_params`` (parameters of the Kronecker head),
``head_macs`` (multiply-adds of the head per image), ``params`` (of the whole network) or
``train_seconds``; Optuna does not prune those.

With ``trunk: {weights: <trunk file or run folder>, freeze: true|false|N}`` the network starts from
a pretrained trunk (its widths, activation and input size come from the file) and only the head is
new: frozen (``true``), fine-tuned with the head at ``lr_scale`` times its rate (``false``), or
frozen for the first N epochs. ``freeze`` and ``trunk_lr_scale`` are then searchable too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from optileuk.data import DatasetConfig, Resize, SplitConfig, Stain, SyntheticData
from optileuk.errors import ConfigError, DataError, Problem
from optileuk.metrics import bootstrap_ci, bootstrap_se, fold_scores, scores
from optileuk.models import DKNN
from optileuk.objectives._augment import TrainAugment
from optileuk.objectives._base import ClassifiesCells, Device, Objective, ObjectiveConfig, Score
from optileuk.folds import OOF, REPEAT, fold_attrs, oof_attr, options
from optileuk.objectives._final import Fitted
from optileuk.objectives._inputs import INPUT_KEYS, check_defaults, check_sizes, prepare_images, with_inputs
from optileuk.objectives._model import NetModel, Prediction
from optileuk.objectives._torch import fit, image_tensor, n_params, predict, predict_proba, resolve_device, seeded
from optileuk.objectives._trunk import (ARCH_KEYS, TRUNK_FILE, TrunkConfig, frozen_epochs, read_trunk, save_trunk,
                                        trunk_mismatch)

SCHEDULES = ("onecycle", "constant")
ACTIVATIONS = ("prelu", "relu")
POOLS = ("flatten", "avg")
# categorical parameters and what they can be
CHOICES = {"activation": ACTIVATIONS, "schedule": SCHEDULES, "pool": POOLS, "tta": (True, False)}
TRUNK_PARAMS = ("freeze", "trunk_lr_scale")  # searchable with a pretrained trunk only
FIXED_BY_TRUNK = ("activation", "prelu_mode", "kron_conv_rank", "depth", "image_size")  # the trunk file's
DEFAULTS = {"rank1": 2, "rank2": 1, "shape1": "auto", "kron_conv_rank": 0, "activation": "prelu", "prelu_mode": "channel",
            "prelu_init": 0.25, "lr": 3e-3, "weight_decay": 1e-3, "batch_size": 64, "epochs": 20, "dropout": 0.2,
            "schedule": "onecycle", "depth": 0, "pool": "flatten", "tta": False, "kron_lr_scale": 1.0}


def _positive(value: Any) -> bool:
    """A number above 0 (``kron_lr_scale``, as a default or a searched bound or choice)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


class DknnConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(type="synthetic", n_per_class=300))
    split: SplitConfig = SplitConfig(test_size=0.2, folds=1, val_size=0.25)
    augment: TrainAugment = Field(TrainAugment(), description="training-only augmentation, on the device")
    image_size: int = Field(32, ge=8, le=512, description="network input side (searchable as image_size)")
    resize: Resize = Field("pad", description="how images of other sizes and shapes become image_size squares")
    stain: Stain = Field("none", description="stain normalisation (searchable as stain)")
    stain_reference: Optional[str] = Field(None, description="image file to normalise to (default: search-part images)")
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    hidden: int = Field(256, ge=2)
    trunk: Optional[TrunkConfig] = Field(None, description="start from a pretrained trunk (optileuk train of a dknn)")
    device: Device = "auto"
    defaults: dict[str, Any] = Field(default_factory=dict, description="values of parameters not searched")

    def file_problems(self, src: str) -> list:
        """The trunk is read (header and tensors) at load time: a missing, unreadable or mismatched
        file is refused before anything runs."""
        out = super().file_problems(src)
        if self.trunk is None:
            return out
        try:
            trunk = read_trunk(self.trunk.weights)
        except DataError as exc:
            return out + [Problem(src, "objective.trunk.weights", str(exc), self.trunk.weights)]
        widths = self.widths if "widths" in self.model_fields_set else trunk.architecture["widths"]  # left out: the trunk's
        return out + [Problem(src, key, rule, value) for key, rule, value in
                      trunk_mismatch(trunk, self.image_size, widths, "image_size")]


def parse_shape(text: Any, where: str = "shape1") -> tuple[int, int, int, int] | None:
    if text in (None, "auto"):
        return None
    try:
        parts = tuple(int(p) for p in str(text).lower().split("x"))
        if len(parts) != 4 or min(parts) < 1:
            raise ValueError
        return parts
    except ValueError:
        raise ConfigError([Problem("", where, "must be 'auto' or 'm1xm2xn1xn2' (four positive integers)", text)]) from None


class DknnObjective(ClassifiesCells, Objective):
    deterministic = True  # seeded: the same config scores the same
    Config = DknnConfig
    config: DknnConfig
    primary = "error"
    VALUES = {"head_params": "minimize", "head_macs": "minimize", "params": "minimize", "train_seconds": "minimize"}
    resamples = predicts_oof = True

    def __init__(self, config=None, *, space=None, seed=0, objectives=None):
        super().__init__(config, space=space, seed=seed, objectives=objectives)
        check_defaults(self.config.defaults, (*DEFAULTS, "hidden", *self._trunk_params()), "dknn")
        bad = [Problem("", f"objective.defaults.{name}", f"must be {' or '.join(map(str, allowed))}",
                       self.config.defaults[name])
               for name, allowed in CHOICES.items()
               if name in self.config.defaults and self.config.defaults[name] not in allowed]
        scale = self.config.defaults.get("kron_lr_scale", 1.0)
        if not _positive(scale):
            bad.append(Problem("", "objective.defaults.kron_lr_scale", "must be a number > 0", scale))
        if bad:
            raise ConfigError(bad)

    def _trunk_params(self) -> tuple[str, ...]:
        return TRUNK_PARAMS if self.config.trunk is not None else ()

    @property
    def trunk(self):
        """The pretrained trunk (read once), or ``None``."""
        if self.config.trunk is None:
            return None
        if getattr(self, "_trunk", None) is None:
            self._trunk = read_trunk(self.config.trunk.weights)
        return self._trunk

    def widths(self) -> list[int]:
        return list(self.trunk.architecture["widths"]) if self.trunk is not None else list(self.config.widths)

    def params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        base = {**DEFAULTS, "hidden": self.config.hidden}
        t = self.config.trunk
        if t is not None:
            base.update(freeze=t.freeze, trunk_lr_scale=t.lr_scale)
        p = with_inputs(base, self.config, config)
        if t is not None:  # the trunk's tensors fix these
            p.update({k: self.trunk.architecture[k] for k in ARCH_KEYS if k != "widths"})
        return p

    def default_params(self) -> dict[str, Any]:
        return self.params({})

    def check_space(self, space) -> list[str]:
        out = self.unused(space, (*DEFAULTS, "hidden", *INPUT_KEYS, *TRUNK_PARAMS), "dknn")
        if self.config.trunk is None:
            out += [f"parameter '{n}' needs objective.trunk (a pretrained trunk to freeze or fine-tune)"
                    for n in TRUNK_PARAMS if n in space.params]
        else:
            out += [f"parameter '{n}' is fixed by objective.trunk ({self.config.trunk.weights}); leave it out"
                    for n in FIXED_BY_TRUNK if n in space.params]
        for name, allowed in CHOICES.items():
            bad = [c for c in (getattr(space.params.get(name), "choices", None) or []) if c not in allowed]
            if bad:
                out.append(f"{name} can be {' or '.join(map(str, allowed))} only (got {bad[0]!r})")
        rate = space.params.get("kron_lr_scale")
        for value in (getattr(rate, "choices", None) or [getattr(rate, "low", 1.0)]):
            if not _positive(value):
                out.append(f"kron_lr_scale must be > 0 ({'low' if hasattr(rate, 'low') else 'a choice'} is {value!r})")
        out += self._shape_problems(space)
        return out + check_sizes(space, self.config.image_size, 2 ** len(self.widths()), "2**len(objective.widths)")

    def _shape_problems(self, space) -> list[str]:
        """Every factor shape ``shape1`` can take (the space's choices, else the default) must factor the
        first head layer, ``hidden`` x the trunk's output, where those are fixed: refused before a study
        is stored, not at its first candidate (a bad default is a :class:`ConfigError`)."""
        p = self.params({})
        searched = "shape1" in space.params
        where = "shape1" if searched else "objective.defaults.shape1"
        texts = (getattr(space.params["shape1"], "choices", None) or []) if searched else [p["shape1"]]
        side = int(p["image_size"]) // 2 ** len(self.widths())
        flat = self.widths()[-1] * (side * side if p["pool"] == "flatten" else 1)
        out = []
        for text in texts:
            shape = parse_shape(text, where)
            if shape is None:
                continue
            hidden_ok = "hidden" in space.params or shape[0] * shape[1] == int(p["hidden"])
            input_ok = any(k in space.params for k in ("image_size", "pool")) or shape[2] * shape[3] == flat
            if not (hidden_ok and input_ok):
                out.append(f"must factor the first head layer: m1*m2 = hidden ({p['hidden']}), n1*n2 = the trunk's "
                           f"output ({self.widths()[-1]} channels x {side}x{side}"
                           f"{'' if p['pool'] == 'flatten' else ', averaged'} = {flat})")
                if not searched:
                    raise ConfigError([Problem("", where, out[-1], text)])
                out[-1] = f"{where} {text!r} {out[-1]}"
        return out

    def prepare(self) -> None:
        if self._data is not None:
            return
        self._data = self.prepared = prepare_images(self.config, self.seed)
        self.split_sizes = self._data.sizes()
        self._views: dict[tuple, tuple] = {}

    def view(self, p: Mapping[str, Any], fold=None) -> tuple:
        """(classes, training images and labels on the device, validation images and labels) of ``fold``
        (default: the first) at the candidate's input size, placement and stain; kept across candidates."""
        data = self._data
        fold = data.splits.folds[0] if fold is None else fold
        key = (int(p["image_size"]), p["resize"], p["stain"], fold.repeat, int(fold.val[0]) if len(fold.val) else -1,
               len(fold.val))
        if key not in self._views:
            sds = data.stained.dataset(p["stain"])
            train, val = sds.subset(fold.train), sds.subset(fold.val)
            s, r, dev = key[0], key[1], resolve_device(self.config.device)
            self._views[key] = (data.ds.classes, image_tensor(train.images, s, r).to(dev),
                                torch.from_numpy(train.labels).to(dev), image_tensor(val.images, s, r).to(dev), val.labels)
            while len(self._views) > 4:
                self._views.pop(next(iter(self._views)))
        return self._views[key]

    def build(self, params: Mapping[str, Any], n_classes: int) -> DKNN:
        """The candidate's network; with a trunk, its pretrained weights loaded."""
        net = build_dknn(architecture(self.params(params), self.widths(), n_classes))
        if self.trunk is not None:
            self.trunk.load_into(net.trunk)
        return net

    def pretrained(self, model: DKNN, p: Mapping[str, Any]) -> tuple | None:
        """``fit``'s ``pretrained`` argument: the trunk, its frozen epochs and its rate scale."""
        if self.trunk is None:
            return None
        return model.trunk, frozen_epochs(p["freeze"], int(p["epochs"])), float(p["trunk_lr_scale"])

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        self.prepare()
        config, opts = options(config)
        p = self.params(config)
        folds = self._data.folds(opts.get(REPEAT))
        start = time.perf_counter()
        runs = [self._train_fold(p, fold, trial if j == 0 and len(self.directions) == 1 else None)
                for j, fold in enumerate(folds)]
        model, epochs = runs[0][0], runs[0][1]
        n = len(self._data.ds.classes)
        ys, preds = [r[2] for r in runs], [r[3] for r in runs]
        per = [scores(y, pred, n) for y, pred in zip(ys, preds)]
        errors = [1.0 - m["balanced_accuracy"] for m in per]
        if len(runs) == 1:  # one validation split: its metrics, bootstrap intervals and standard error
            m = {**per[0], **{f"{k}_ci95": v for k, v in bootstrap_ci(ys[0], preds[0], n, n_boot=1000,
                                                                       seed=self.seed).items()}}
            se = bootstrap_se(ys[0], preds[0], n, seed=self.seed).get("balanced_accuracy")
            split = "validation (hold-out of the search part)"
        else:
            m, se = fold_scores(ys, preds, n, self.seed, per=per), None
            split = f"validation: {len(runs)} hold-out splits of the search part (repeats)"
        attrs = {**m, **fold_attrs(errors, folds, se=se),
                 "head_params": model.head_parameters(), "head_macs": model.head_macs(),
                 "params": n_params(model), "epochs_trained": epochs, "device": str(resolve_device(self.config.device)),
                 "train_seconds": time.perf_counter() - start, "split": split}
        if opts.get(OOF) and folds is self._data.splits.folds:
            attrs["oof"] = oof_attr(self._data.splits.search, folds, preds, self._data.ds.labels, self._data.splits.repeats)
        return Score(float(np.mean(errors)) if len(runs) > 1 else errors[0], attrs)

    def _train_fold(self, p: Mapping[str, Any], fold, trial) -> tuple:
        """Train the candidate on ``fold``'s training part; (model, epochs, validation labels, predictions)."""
        classes, xtr, ytr, xva, yva = self.view(p, fold)
        device = resolve_device(self.config.device)
        try:
            with seeded(self.seed):
                model = self.build(p, len(classes))
        except ValueError as exc:  # e.g. a factor shape that does not fit the layer
            raise ConfigError([Problem("", "shape1", str(exc), p["shape1"])]) from None

        def val_error(epoch: int) -> float:
            pred = predict(model, xva, device).argmax(1).numpy()
            return 1.0 - scores(yva, pred, len(classes))["balanced_accuracy"]

        epochs = fit(model, xtr, ytr, loss_fn=F.cross_entropy, epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                     lr=float(p["lr"]), weight_decay=float(p["weight_decay"]), device=device, seed=self.seed,
                     on_epoch=val_error, trial=trial, augment=self.config.augment.batch(),
                     one_cycle=p["schedule"] == "onecycle", pretrained=self.pretrained(model, p),
                     factor_scale=float(p["kron_lr_scale"]))
        pred = (predict_proba(model, xva, device, tta=True) if p["tta"] else predict(model, xva, device)).argmax(1).numpy()
        return model, epochs, yva, pred

    def fit_final(self, params: Mapping[str, Any], *, on_step=None) -> Fitted:
        """Train on the whole search part (training + validation; augmented as in the search)."""
        c = self.config
        p = self.params(params)
        self.prepare()
        data = self._data
        ds, splits, stained = data.ds, data.splits, data.stained
        train = stained.dataset(p["stain"]).subset(splits.search)
        size, resize = int(p["image_size"]), p["resize"]
        device = resolve_device(c.device)
        with seeded(self.seed):
            model = self.build(p, len(ds.classes))
        epochs = int(p["epochs"])
        start = time.perf_counter()
        fit(model, image_tensor(train.images, size, resize), torch.from_numpy(train.labels), loss_fn=F.cross_entropy,
            epochs=epochs, batch_size=int(p["batch_size"]), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]),
            device=device, seed=self.seed, on_epoch=(lambda e: on_step(e + 1, epochs, "epochs")) if on_step else None,
            augment=c.augment.batch(), one_cycle=p["schedule"] == "onecycle", pretrained=self.pretrained(model, p),
            factor_scale=float(p["kron_lr_scale"]))
        fitted = DknnModel({"image_size": size, "resize": resize, "tta": bool(p["tta"]),
                            "architecture": architecture(p, self.widths(), len(ds.classes))},
                           classes=ds.classes, stain=stained.normaliser(p["stain"]), seed=self.seed,
                           device=c.device, net=model)
        return Fitted(fitted, facts={"train_images": len(train), "search_images": len(splits.search),
                                     "epochs": epochs, "device": str(device), "train_seconds": time.perf_counter() - start,
                                     "head_params": model.head_parameters(), "head_macs": model.head_macs(),
                                     "params": n_params(model)})


def architecture(p: Mapping[str, Any], widths, n_classes: int) -> dict[str, Any]:
    """The DKNN's constructor arguments (plain JSON) for a candidate's parameters."""
    shape = parse_shape(p["shape1"])
    return {"n_classes": int(n_classes), "image_size": int(p["image_size"]), "widths": [int(w) for w in widths],
            "ranks": [int(p["rank1"]), int(p["rank2"])], "hidden": int(p["hidden"]),
            "shapes": [list(shape) if shape else None, None], "prelu_mode": p["prelu_mode"],
            "prelu_init": float(p["prelu_init"]), "dropout": float(p["dropout"]),
            "kron_conv_rank": int(p["kron_conv_rank"]), "activation": p["activation"], "depth": int(p["depth"]),
            "pool": p["pool"]}


def build_dknn(arch: Mapping[str, Any]) -> DKNN:
    """A DKNN from :func:`architecture`'s arguments."""
    a = dict(arch)
    return DKNN(a.pop("n_classes"), image_size=a.pop("image_size"), widths=tuple(a.pop("widths")),
                ranks=tuple(a.pop("ranks")), shapes=tuple(tuple(s) if s else None for s in a.pop("shapes")), **a)


class DknnModel(NetModel):
    """A trained DKNN: images stain-normalised, placed in ``image_size`` squares (``resize``),
    classified; the scores are the softmax probabilities."""

    kind, task = "dknn", "classification"

    def __init__(self, spec, *, classes, stain, seed=0, device="auto", net: DKNN | None = None):
        super().__init__(spec, classes=classes, stain=stain, seed=seed, device=device)
        self.net = net if net is not None else build_dknn(spec["architecture"])
        self.net.to(self.torch_device).eval()

    def prepare(self, images):
        return image_tensor(super().prepare(images), int(self.spec["image_size"]), self.spec["resize"])

    def run(self, x):
        proba = predict_proba(self.net, x, self.torch_device, tta=bool(self.spec.get("tta"))).numpy().astype(np.float64)
        return Prediction(labels=proba.argmax(1), scores=proba)

    def describe(self):
        return {"input": {"image_size": self.spec["image_size"], "resize": self.spec["resize"]},
                "test_time_augmentation": bool(self.spec.get("tta"))}

    def save_extras(self, folder, *, training_data=None) -> None:
        """``trunk.safetensors``: the trained trunk, for ``trunk: {weights: <this run folder>}``."""
        save_trunk(self.net, self.spec["architecture"], int(self.spec["image_size"]), Path(folder) / TRUNK_FILE,
                   classes=list(self.classes), trained_on=training_data)


DknnObjective.Model = DknnModel  # what train_final fits and optileuk predict applies
