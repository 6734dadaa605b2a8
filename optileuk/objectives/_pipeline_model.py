"""The ``pipeline`` objective's stages as functions, shared by the search (with its stage caches) and
the fitted :class:`PipelineModel` that ``optileuk predict`` applies to new images.

1. ``square``: a stain-normalised image placed in the working square (uint8);
2. masks: :func:`classical_masks` (nucleus by clustering, cell by the darker colour clusters that
   touch it) or a U-Net's (:func:`train_segmenter`, :func:`unet_masks`);
3. measurements (:func:`optileuk.features._cells.measure_cell`), whole-crop features, deep features
   of a trunk (:func:`trunk_features`);
4. the selected columns, then the classifier.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from skimage import morphology
from torch.nn import functional as F

from optileuk.data import from_square, square_image, to_square
from optileuk.features import CELL_FEATURES, handcrafted_features, measure_cell
from optileuk.objectives._augment import BatchAugment
from optileuk.objectives._model import FittedModel, mask_labels
from optileuk.objectives._torch import fit, image_tensor, load_weights, predict, seeded
from optileuk.objectives._trunk import trunk_net
from optileuk.objectives._segmentation import (cluster, cluster_key, darkness, kmeans_labels, nucleus_mask,
                                               pixel_features)


def square_u8(image: np.ndarray, size: int, resize: str) -> np.ndarray:
    """An image placed in a ``size`` square (``resize``), as uint8: where the pipeline works."""
    return (square_image(image, size, resize) * 255 + 0.5).astype(np.uint8)


def compact(clustered: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels as int8 (an Otsu darkness map as float32): thousands fit in the cache."""
    labels, centres = clustered
    return labels.astype(np.int8 if np.issubdtype(labels.dtype, np.integer) else np.float32), centres


def nucleus_clusters(square: np.ndarray, p: Mapping[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    return compact(cluster(square, *cluster_key(p), seed))


def cell_clusters(square: np.ndarray, k: int, blur: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return compact(kmeans_labels(pixel_features(square, "lab", blur), k, seed))


def classical_masks(nuc_clustered, cell_clustered, p: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(nucleus, cell) masks from an image's nucleus clustering and its cell clustering
    (:func:`nucleus_clusters`, :func:`cell_clusters` with ``cell_k`` and ``blur_sigma``)."""
    nuc = nucleus_mask(nuc_clustered, p)
    labels, centres = cell_clustered
    dark = np.argsort(-darkness(centres, "lab"))[: int(p["cell_rank"]) + 1]
    fg = np.isin(labels, dark) | nuc
    if int(p["cell_opening"]) > 0:
        fg = ndimage.binary_opening(fg, morphology.disk(int(p["cell_opening"]))) | nuc
    comp, _ = ndimage.label(fg)
    touching = np.unique(comp[nuc & (comp > 0)])
    cell = ndimage.binary_fill_holes(np.isin(comp, touching[touching > 0])) if len(touching) else nuc.copy()
    return nuc, cell | nuc


def segmenter_net(unet: Mapping[str, Any]) -> torch.nn.Module:
    from optileuk.models import UNetPLR

    return UNetPLR(depth=int(unet["depth"]), base=int(unet["base"]), norm=True, out_channels=2)


def train_segmenter(squares: Sequence[np.ndarray], masks: Sequence[np.ndarray], unet: Mapping[str, Any], size: int,
                    resize: str, device, seed: int) -> torch.nn.Module:
    """The study's U-Net (nucleus and cell channels) trained on ``squares`` and their 0/1/2 ``masks``
    (MONAI Dice + cross-entropy, one-cycle schedule, training-only augmentation)."""
    from monai.losses import DiceCELoss

    s = int(unet["image_size"])
    x = image_tensor(list(squares), s, "stretch")
    target = torch.stack([to_square(torch.from_numpy(np.stack([m == 2, m >= 1]).astype(np.float32)), size, resize,
                                    mask=True) for m in masks])
    y = F.interpolate(target, size=(s, s), mode="nearest")
    with seeded(seed):
        net = segmenter_net(unet)
    fit(net, x, y, loss_fn=DiceCELoss(sigmoid=True), epochs=int(unet["epochs"]), batch_size=int(unet["batch_size"]),
        lr=float(unet["lr"]), weight_decay=0.0, device=device, seed=seed, one_cycle=True,
        augment=BatchAugment(flips=True, rot90=True, scale=0.1, colour_jitter=0.1, stain_jitter=0.05))
    return net


def unet_masks(net: torch.nn.Module, squares: Sequence[np.ndarray], unet: Mapping[str, Any], size: int,
               device) -> np.ndarray:
    """(N, 2, size, size) boolean nucleus and cell masks of ``squares`` by a trained segmenter."""
    s = int(unet["image_size"])
    logits = predict(net, image_tensor(list(squares), s, "stretch"), device, batch_size=32)
    logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    masks = (logits > 0).numpy()
    masks[:, 1] |= masks[:, 0]
    return masks


def trunk_features(net: torch.nn.Module, images: Sequence[np.ndarray], size: int, resize: str) -> np.ndarray:
    """Pooled features of a DKNN trunk (on the CPU, 256 images at a time)."""
    net.eval()
    x = image_tensor(list(images), size, resize)
    with torch.no_grad():
        return torch.cat([net.features(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()


def image_features(squares: Sequence[np.ndarray]) -> np.ndarray:
    """Whole-crop colour/texture features of the working squares (the ``use_image`` group)."""
    return handcrafted_features(list(squares), 64, "stretch")


class PipelineModel(FittedModel):
    """Segment (classical or the U-Net trained on the search part), measure, select, classify.

    Its prediction carries the class scores, the nucleus and cell masks on each image's own pixels
    and the cell measurements (:data:`~optileuk.features._cells.CELL_FEATURES`)."""

    kind, task = "pipeline", "both"
    measurement_names = tuple(CELL_FEATURES)

    def __init__(self, spec, *, classes, stain, seed=0, device="auto", segmenter=None, trunk=None, classifier=None):
        super().__init__(spec, classes=classes, stain=stain, seed=seed, device=device)
        self.segmenter, self.trunk, self.classifier = segmenter, trunk, classifier

    def features(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """(every feature of each stain-normalised image, its (nucleus, cell) masks at the working size)."""
        s, p = self.spec, self.spec["params"]
        squares = [square_u8(im, int(s["image_size"]), s["resize"]) for im in images]
        if s["segmenter"] == "unet":
            m = unet_masks(self.segmenter, squares, s["unet"], int(s["image_size"]), self.torch_device)
            masks = [(m[i, 0], m[i, 1]) for i in range(len(squares))]
        else:
            blur = round(float(p["blur_sigma"]), 6)
            masks = [classical_masks(nucleus_clusters(sq, p, self.seed),
                                     cell_clusters(sq, int(p["cell_k"]), blur, self.seed), p) for sq in squares]
        parts = [np.stack([measure_cell(sq, nuc, cell) for sq, (nuc, cell) in zip(squares, masks)]),
                 image_features(squares)]
        if self.trunk is not None:
            t = s["trunk"]
            parts.append(trunk_features(self.trunk, images, int(t["image_size"]), s["resize"]))
        return np.concatenate(parts, axis=1), masks

    def run(self, images):
        from optileuk.objectives._handcrafted import classify

        x, masks = self.features(images)
        cols = np.asarray(self.spec["columns"], dtype=int)
        pred = classify(self.classifier, x[:, cols], len(self.classes))
        resize = self.spec["resize"]
        pred.masks = [mask_labels(*(self._on_pixels(m, im.shape[:2], resize) for m in pair))
                      for im, pair in zip(images, masks)]
        pred.measurements, pred.measurement_names = x[:, :len(CELL_FEATURES)], list(CELL_FEATURES)
        return pred

    @staticmethod
    def _on_pixels(mask: np.ndarray, shape, resize: str) -> np.ndarray:
        t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
        return (from_square(t, shape[0], shape[1], resize)[0] > 0.5).numpy()

    def tensors(self):
        out = {}
        for prefix, net in (("segmenter.", self.segmenter), ("trunk.", self.trunk)):
            if net is not None:
                out.update({prefix + k: v.detach().cpu() for k, v in net.state_dict().items()})
        return out

    def estimators(self):
        return {"classifier": self.classifier}

    @classmethod
    def restore(cls, spec, *, classes, stain, seed, device, tensors, arrays, estimators):
        segmenter = trunk = None
        if spec["segmenter"] == "unet":
            segmenter = segmenter_net(spec["unet"])
            load_weights(segmenter, tensors, "segmenter.")
        if spec.get("trunk"):
            trunk = trunk_net(spec["trunk"])
            load_weights(trunk, tensors, "trunk.")
        model = cls(spec, classes=classes, stain=stain, seed=seed, device=device, segmenter=segmenter, trunk=trunk,
                    classifier=estimators["classifier"])
        if segmenter is not None:
            segmenter.to(model.torch_device)
        return model

    def describe(self):
        names = self.spec["feature_names"]
        return {"input": {"image_size": self.spec["image_size"], "resize": self.spec["resize"]},
                "segmenter": self.spec["segmenter"],
                "features": {"names": names, "selected": [names[i] for i in self.spec["columns"]]}}
