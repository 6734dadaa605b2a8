"""``unet_plr``: train a U-Net with PReLU (seed 003) for nucleus masks; score = 1 - validation Dice.

Searchable: ``depth``, ``base`` (first layer width), ``prelu_mode`` (shared | channel),
``prelu_init``, ``lr``, ``weight_decay``, ``batch_size``, ``epochs``. Dice on the validation
split is reported after every epoch (pruners work); the test split is held out.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Mapping

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from optileuk.data import AugmentConfig, DatasetConfig, SplitConfig, SyntheticData, augment_training, final_parts, load_dataset, make_splits
from optileuk.errors import DataError
from optileuk.models import UNetPLR
from optileuk.objectives._base import Objective, ObjectiveConfig, Score
from optileuk.objectives._final import TEST_SPLIT, Final, mask_predictions, segmentation_metrics
from optileuk.objectives._torch import fit, image_tensor, mask_tensor, n_params, predict, resolve_device, seeded

DEFAULTS = {"depth": 2, "base": 8, "prelu_mode": "channel", "prelu_init": 0.25, "lr": 3e-3, "weight_decay": 0.0,
            "batch_size": 16, "epochs": 6}


class UNetConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(type="synthetic", n_per_class=40))
    split: SplitConfig = SplitConfig(test_size=0.2, folds=1, val_size=0.25)
    augment: AugmentConfig = AugmentConfig()
    target: Literal["nucleus", "cell"] = "nucleus"
    image_size: int = Field(32, ge=16, le=1024)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    defaults: dict[str, Any] = Field(default_factory=dict)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + (1 - dice).mean()


def dice_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    target = target.to(pred.device)
    inter = (pred * target).sum((1, 2, 3))
    total = pred.sum((1, 2, 3)) + target.sum((1, 2, 3))
    return float(torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total)).mean())


class UNetObjective(Objective):
    Config = UNetConfig
    config: UNetConfig

    def check_space(self, space) -> list[str]:
        self.check_device()
        out = self.unused(space, DEFAULTS, "unet_plr")
        p = space.params.get("depth")
        if p is not None and getattr(p, "high", 0) and self.config.image_size % 2 ** p.high:
            out.append(f"image_size {self.config.image_size} must be divisible by 2**depth up to depth {p.high}")
        return out

    def prepare(self) -> None:
        if self._data is not None:
            return
        ds = load_dataset(self.config.dataset)
        if ds.masks is None:
            raise DataError(f"{ds.name}: the unet_plr objective needs masks (dataset type pairs or synthetic)")
        fold = make_splits(ds, self.config.split, seed=self.seed).folds[0]
        train, _ = augment_training(ds, fold.train, self.config.augment, np.random.default_rng(self.seed))
        val = ds.subset(fold.val)
        s, t, dev = self.config.image_size, self.config.target, resolve_device(self.config.device)
        self._data = (image_tensor(train.images, s).to(dev), mask_tensor(train.masks, s, t).to(dev),
                      image_tensor(val.images, s).to(dev), mask_tensor(val.masks, s, t).to(dev))

    def build(self, p: Mapping[str, Any]) -> UNetPLR:
        with seeded(self.seed):
            return UNetPLR(depth=int(p["depth"]), base=int(p["base"]), prelu_mode=p["prelu_mode"],
                           prelu_init=float(p["prelu_init"]))

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        self.prepare()
        xtr, ytr, xva, yva = self._data
        p = {**DEFAULTS, **self.config.defaults, **config}
        device = resolve_device(self.config.device)
        model = self.build(p)
        start = time.perf_counter()

        def val_error(epoch: int) -> float:
            return 1.0 - dice_score((predict(model, xva, device) > 0).float(), yva)

        epochs = fit(model, xtr, ytr, loss_fn=dice_loss, epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                     lr=float(p["lr"]), weight_decay=float(p["weight_decay"]), device=device, seed=self.seed,
                     on_epoch=val_error, trial=trial)
        dice = dice_score((predict(model, xva, device) > 0).float(), yva)
        return Score(1.0 - dice, {"dice": dice, "params": n_params(model), "epochs_trained": epochs,
                                  "device": str(device), "train_seconds": time.perf_counter() - start,
                                  "split": "validation (hold-out of the search part)"})

    def train_final(self, params: Mapping[str, Any], *, on_step=None) -> Final:
        """Train on the whole search part (training + validation), segment the test split once."""
        c = self.config
        p = {**DEFAULTS, **c.defaults, **params}
        ds = load_dataset(c.dataset)
        if ds.masks is None:
            raise DataError(f"{ds.name}: the unet_plr objective needs masks (dataset type pairs or synthetic)")
        splits, train, test = final_parts(ds, c.split, c.augment, self.seed)
        s, device, epochs = c.image_size, resolve_device(c.device), int(p["epochs"])
        model = self.build(p)
        start = time.perf_counter()
        fit(model, image_tensor(train.images, s), mask_tensor(train.masks, s, c.target), loss_fn=dice_loss,
            epochs=epochs, batch_size=int(p["batch_size"]), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]),
            device=device, seed=self.seed, on_epoch=(lambda e: on_step(e + 1, epochs, "epochs")) if on_step else None)
        preds = list((predict(model, image_tensor(test.images, s), device) > 0)[:, 0].numpy())
        truths = list(mask_tensor(test.masks, s, c.target)[:, 0].numpy() > 0.5)
        metrics = {**segmentation_metrics(preds, truths), "split": TEST_SPLIT, "target": c.target,
                   "resolution": f"{s}x{s} (the model's input size)"}
        return Final("segmentation", metrics, mask_predictions(preds, truths, splits.test),
                     state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
                     facts={"train_images": len(train), "epochs": epochs, "device": str(device),
                            "train_seconds": time.perf_counter() - start, "params": n_params(model)})
