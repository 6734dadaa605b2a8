"""``unet_plr``: train a U-Net with PReLU (seed 003) for nucleus (or whole-cell) masks; score = 1 - validation Dice.

Searchable (unsearched keys take ``defaults``, then the values below):

* network: ``arch`` (``plr``: our U-Net with one PReLU slope per channel or per layer, as in
  seed 003; ``monai``: MONAI's residual U-Net with PReLU), ``depth``, ``base`` (first width),
  ``prelu_mode`` (``channel`` | ``shared``; MONAI's network takes one shared slope per layer),
  ``prelu_init``, ``norm`` (batch normalisation), ``res_units`` (MONAI only);
* training: ``lr``, ``weight_decay``, ``batch_size``, ``epochs`` (at most), ``patience`` (early
  stopping on the validation split; 0 = off), ``schedule`` (``onecycle`` | ``constant``),
  ``dice_weight`` (MONAI's Dice + cross-entropy loss: Dice term weight, cross-entropy 1);
* training-only augmentation: ``flips``, ``rot90``, ``scale``, ``colour_jitter``, ``stain_jitter``;
* input: ``image_size``, ``resize`` (pad | crop | stretch) and ``stain`` (none | reinhard |
  macenko); their defaults are the objective's own keys of the same names.

The validation Dice is measured on the images' own pixels (predictions mapped back from the
network's input size) after every epoch and reported for pruners; the test split is held out.
MONAI provides the loss and the residual network; our U-Net stays for the per-channel PReLU of the
seed paper, which MONAI's single activation spec cannot express.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import Field

from optileuk.data import DatasetConfig, Resize, SplitConfig, Stain, SyntheticData, from_square
from optileuk.models import UNetPLR
from optileuk.objectives._augment import BatchAugment
from optileuk.objectives._base import Device, Objective, ObjectiveConfig, Score
from optileuk.folds import REPEAT, fold_attrs, options
from optileuk.objectives._final import Fitted
from optileuk.objectives._inputs import INPUT_KEYS, check_sizes, prepare_images, with_inputs
from optileuk.objectives._model import CELL, NUCLEUS, NetModel, Prediction
from optileuk.objectives._torch import (fit, image_tensor, mask_tensor, n_params, predict, resolve_device,
                                        seeded, target_of)

DEFAULTS = {"arch": "plr", "depth": 3, "base": 16, "prelu_mode": "channel", "prelu_init": 0.25, "norm": True,
            "res_units": 1, "lr": 3e-3, "weight_decay": 0.0, "batch_size": 8, "epochs": 40, "patience": 10,
            "schedule": "onecycle", "dice_weight": 1.0, "flips": True, "rot90": True, "scale": 0.1,
            "colour_jitter": 0.1, "stain_jitter": 0.05}
_NO_LOGIT = -1e4  # pixels a centre crop cut off: background


class UNetConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(type="synthetic", n_per_class=40))
    split: SplitConfig = SplitConfig(test_size=0.2, folds=1, val_size=0.25)
    target: Literal["nucleus", "cell"] = "nucleus"
    image_size: int = Field(32, ge=16, le=1024, description="network input side (searchable as image_size)")
    resize: Resize = Field("pad", description="how images of other sizes and shapes become image_size squares")
    stain: Stain = Field("none", description="stain normalisation (searchable as stain)")
    stain_reference: Optional[str] = Field(None, description="image file to normalise to (default: search-part images)")
    device: Device = "auto"
    defaults: dict[str, Any] = Field(default_factory=dict)


class UNetObjective(Objective):
    deterministic = True  # seeded: the same config scores the same
    Config = UNetConfig
    config: UNetConfig
    primary = "error"  # 1 - Dice on the validation images
    resamples = True
    VALUES = {"params": "minimize", "train_seconds": "minimize"}
    METRICS = ("dice",)

    @classmethod
    def value_meaning(cls, config=None) -> str:
        return "1 - Dice"

    def __init__(self, config=None, *, space=None, seed=0, objectives=None):
        super().__init__(config, space=space, seed=seed, objectives=objectives)
        self._views: dict[tuple, tuple] = {}

    # ---- checks ---------------------------------------------------------------------------------
    def check_space(self, space) -> list[str]:
        out = self.unused(space, (*DEFAULTS, *INPUT_KEYS), "unet_plr")
        d = space.params.get("depth")
        depth = int(getattr(d, "high", None) or max(getattr(d, "choices", None) or [0])) if d is not None else \
            int({**DEFAULTS, **self.config.defaults}["depth"])
        return out + check_sizes(space, self.config.image_size, 2 ** depth, "2**depth")

    # ---- data -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        if self._data is not None:
            return
        data = prepare_images(self.config, self.seed, classify=False, needs_masks="the unet_plr objective needs "
                              "masks (dataset type pairs or synthetic)")
        self.split_sizes = data.sizes()
        self._data = self.prepared = data

    def params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return with_inputs(DEFAULTS, self.config, config)

    def default_params(self) -> dict[str, Any]:
        return self.params({})

    def stained(self, method: str) -> list[np.ndarray]:
        """Every image of the dataset in the stain ``method`` gives (fitted on the search part only)."""
        return self._data.stained.images(method)

    def view(self, p: Mapping[str, Any], train_idx, val_idx) -> tuple:
        """Tensors of (training images, their targets, validation images) at the candidate's input
        size, placement and stain, kept on the device across candidates; validation truths native."""
        key = (int(p["image_size"]), p["resize"], p["stain"], tuple(train_idx), tuple(val_idx))
        if key not in self._views:
            ds = self._data.ds
            images = self.stained(p["stain"])
            s, r, t = int(p["image_size"]), p["resize"], self.config.target
            dev = resolve_device(self.config.device)
            self._views[key] = (image_tensor([images[i] for i in train_idx], s, r).to(dev),
                                mask_tensor([ds.masks[i] for i in train_idx], s, t, r).to(dev),
                                image_tensor([images[i] for i in val_idx], s, r).to(dev),
                                [target_of(ds.masks[i], t) for i in val_idx])
            while len(self._views) > 4:  # a search over input sizes keeps the latest few on the device
                self._views.pop(next(iter(self._views)))
        return self._views[key]

    # ---- model ----------------------------------------------------------------------------------
    def build(self, p: Mapping[str, Any]) -> torch.nn.Module:
        with seeded(self.seed):
            return build_unet(self.params(p))

    @staticmethod
    def loss(p: Mapping[str, Any]):
        from monai.losses import DiceCELoss

        return DiceCELoss(sigmoid=True, lambda_dice=float(p["dice_weight"]), lambda_ce=1.0)

    def predict_masks(self, model, x: torch.Tensor, shapes: list[tuple[int, int]], resize: str) -> list[np.ndarray]:
        """Boolean masks on each image's own pixels from the network's (N, 1, S, S) logits."""
        return logits_to_masks(predict(model, x, resolve_device(self.config.device), batch_size=32), shapes, resize)

    @staticmethod
    def mean_dice(preds: list[np.ndarray], truths: list[np.ndarray]) -> float:
        out = []
        for pr, tr in zip(preds, truths):
            total = pr.sum() + tr.sum()
            out.append(1.0 if total == 0 else 2 * np.logical_and(pr, tr).sum() / total)
        return float(np.mean(out))

    def _train(self, p, train_idx, val_idx, *, trial=None, on_epoch_done=None):
        xtr, ytr, xva, truths = self.view(p, train_idx, val_idx)
        shapes = [t.shape for t in truths]
        device = resolve_device(self.config.device)
        model = self.build(p)
        aug = BatchAugment(flips=bool(p["flips"]), rot90=bool(p["rot90"]), scale=float(p["scale"]),
                           colour_jitter=float(p["colour_jitter"]), stain_jitter=float(p["stain_jitter"]))
        curve: list[float] = []

        def val_error(epoch: int) -> float:
            curve.append(self.mean_dice(self.predict_masks(model, xva, shapes, p["resize"]), truths))
            if on_epoch_done:
                on_epoch_done(epoch)
            return 1.0 - curve[-1]

        patience = int(p["patience"])
        epochs = fit(model, xtr, ytr, loss_fn=self.loss(p), epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                     lr=float(p["lr"]), weight_decay=float(p["weight_decay"]), device=device, seed=self.seed,
                     on_epoch=val_error, trial=trial, augment=aug if aug.active else None,
                     patience=patience if patience > 0 else None, one_cycle=p["schedule"] == "onecycle")
        best_epoch = int(np.argmax(curve)) + 1 if patience > 0 else len(curve)
        return model, epochs, best_epoch, curve[best_epoch - 1]

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        self.prepare()
        config, opts = options(config)
        folds = self._data.folds(opts.get(REPEAT))
        p = self.params(config)
        start = time.perf_counter()
        runs = [self._train(p, fold.train, fold.val, trial=trial if j == 0 and len(self.directions) == 1 else None)
                for j, fold in enumerate(folds)]
        model, epochs, best_epoch, dice = runs[0]
        dices = [r[3] for r in runs]
        fold = folds[0]
        attrs = {"dice": float(np.mean(dices)), "params": n_params(model), "epochs_trained": epochs, "best_epoch": best_epoch,
                 "device": str(resolve_device(self.config.device)), "train_seconds": time.perf_counter() - start,
                 "train_images": len(fold.train), "val_images": len(fold.val),
                 "split": "validation (hold-out of the search part), on the images' own pixels" if len(runs) == 1 else
                 f"validation: {len(runs)} hold-out splits of the search part (repeats), on the images' own pixels",
                 **fold_attrs([1.0 - d for d in dices], folds)}
        if self._data.stained.failures.get(p["stain"]):
            attrs["stain_failures"] = self._data.stained.failures[p["stain"]]
        return Score(1.0 - dice if len(runs) == 1 else float(np.mean([1.0 - d for d in dices])), attrs)

    def fit_final(self, params: Mapping[str, Any], *, on_step=None) -> Fitted:
        """Train as the search did (training split, early stopping on the validation split, same seed)."""
        self.prepare()
        data = self._data
        fold = data.splits.folds[0]
        p = self.params(params)
        start = time.perf_counter()
        total = int(p["epochs"])
        net, epochs, best_epoch, val_dice = self._train(
            p, fold.train, fold.val, on_epoch_done=(lambda e: on_step(e + 1, total, "epochs")) if on_step else None)
        spec = {"architecture": {k: p[k] for k in ARCHITECTURE}, "image_size": int(p["image_size"]),
                "resize": p["resize"], "target": self.config.target}
        model = UNetModel(spec, classes=[], stain=data.stained.normaliser(p["stain"]), seed=self.seed,
                          device=self.config.device, net=net)
        size = int(p["image_size"])
        return Fitted(model, metrics={"resolution": f"each image's own pixels (predicted at {size}x{size}, {p['resize']})"},
                      facts={"train_images": len(fold.train), "val_images": len(fold.val), "epochs": epochs,
                             "best_epoch": best_epoch, "val_dice": val_dice,
                             "device": str(resolve_device(self.config.device)),
                             "train_seconds": time.perf_counter() - start, "params": n_params(net)})


ARCHITECTURE = ("arch", "depth", "base", "prelu_mode", "prelu_init", "norm", "res_units")


def build_unet(p: Mapping[str, Any]) -> torch.nn.Module:
    """The U-Net of a candidate's parameters (:data:`ARCHITECTURE`): ours with PReLU, or MONAI's."""
    depth, base = int(p["depth"]), int(p["base"])
    if p["arch"] == "monai":
        from monai.networks.nets import UNet

        return UNet(spatial_dims=2, in_channels=3, out_channels=1,
                    channels=tuple(base * 2 ** i for i in range(depth + 1)), strides=(2,) * depth,
                    num_res_units=int(p["res_units"]), act=("prelu", {"init": float(p["prelu_init"])}),
                    norm="batch" if p["norm"] else None)
    return UNetPLR(depth=depth, base=base, prelu_mode=p["prelu_mode"], prelu_init=float(p["prelu_init"]),
                   norm=bool(p["norm"]))


def logits_to_masks(logits: torch.Tensor, shapes, resize: str) -> list[np.ndarray]:
    """Boolean masks on each image's own pixels from (N, 1, S, S) logits."""
    return [(from_square(lo, h, w, resize, fill=_NO_LOGIT)[0] > 0).numpy() for lo, (h, w) in zip(logits, shapes)]


class UNetModel(NetModel):
    """A trained U-Net: images stain-normalised, placed in ``image_size`` squares, segmented, and
    the masks mapped back onto each image's own pixels."""

    kind, task = "unet_plr", "segmentation"

    def __init__(self, spec, *, classes, stain, seed=0, device="auto", net=None):
        super().__init__(spec, classes=classes, stain=stain, seed=seed, device=device)
        self.net = net if net is not None else build_unet(spec["architecture"])
        self.net.to(self.torch_device).eval()

    def prepare(self, images):
        stained = super().prepare(images)
        return image_tensor(stained, int(self.spec["image_size"]), self.spec["resize"]), [im.shape[:2] for im in stained]

    def run(self, prepared):
        x, shapes = prepared
        masks = logits_to_masks(predict(self.net, x, self.torch_device, batch_size=32), shapes, self.spec["resize"])
        label = NUCLEUS if self.spec["target"] == "nucleus" else CELL
        return Prediction(masks=[m.astype(np.uint8) * label for m in masks])

    def describe(self):
        return {"input": {"image_size": self.spec["image_size"], "resize": self.spec["resize"]},
                "target": self.spec["target"]}


UNetObjective.Model = UNetModel  # what train_final fits and optileuk predict applies
