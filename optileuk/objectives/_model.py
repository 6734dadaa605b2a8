"""Fitted models: a tuned pipeline that applies to new images exactly as the search scored them.

``optileuk train`` fits an objective's best config on the whole search part and gets a
:class:`FittedModel`: the stain reference fitted on the search part, the input geometry, the
features and their selection, the scaler, the classifier or the network. The test split is
scored by the model's own :meth:`FittedModel.apply`, the path ``optileuk predict`` and
:func:`optileuk.load_model` take on new images, so what was measured is what is applied.

A model is kept as data (:mod:`optileuk.bundle`): its ``spec`` (JSON), torch tensors
(safetensors), numpy arrays and scikit-learn estimators (skops, trusted types only).

Example:
    >>> model = optileuk.load_model("runs/best")  # doctest: +SKIP
    >>> model.predict(["cell1.png", "cell2.png"])  # doctest: +SKIP
    array(['L1', 'normal'], dtype='<U6')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

from optileuk.data import StainNormaliser, as_rgb
from optileuk.errors import DataError

NUCLEUS, CELL = 2, 1  # mask labels: 0 background, 1 cytoplasm (or a whole cell), 2 nucleus


@dataclass
class Prediction:
    """What a model says about a batch of images.

    Attributes:
        labels: class index per image (classifiers), as the classifier itself decides.
        scores: (N, classes) class scores: probabilities when ``probabilities``, else decision values.
        masks: uint8 masks on each image's own pixels (0 background, 1 cytoplasm or cell, 2 nucleus).
        measurements: (N, M) measurements of the segmented cell (the pipeline), named ``measurement_names``.
    """

    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    probabilities: bool = True
    masks: list[np.ndarray] | None = None
    measurements: np.ndarray | None = None
    measurement_names: list[str] = field(default_factory=list)

    @staticmethod
    def concat(parts: Sequence["Prediction"]) -> "Prediction":
        """One prediction of the images of ``parts`` in order."""
        first = parts[0]

        def cat(name):
            vals = [getattr(p, name) for p in parts]
            return None if vals[0] is None else np.concatenate(vals)

        return Prediction(cat("labels"), cat("scores"), first.probabilities,
                          None if first.masks is None else [m for p in parts for m in p.masks],
                          cat("measurements"), first.measurement_names)


class FittedModel:
    """Base of every objective's fitted model.

    Subclasses set ``kind`` (the objective type) and ``task``, implement :meth:`run` on what
    :meth:`prepare` makes of a batch (stain-normalised RGB images by default; a network's input
    tensor) and say what they keep: :meth:`tensors`, :meth:`arrays`,
    :meth:`estimators` and ``spec`` (plain JSON), from which :meth:`restore` builds them again.

    Args:
        spec: everything besides weights that the model needs (input size, parameters, ...).
        classes: class names in the order of the scores (``[]`` for a segmenter).
        stain: the stain normaliser fitted on the search part.
        seed: the seed the model was trained with (clusterings are seeded per image).
        device: where networks run (``auto``: CUDA when present).
    """

    kind: ClassVar[str] = ""
    task: ClassVar[str] = "classification"  # classification | segmentation | both
    batch_size: int = 64  # images read, normalised and applied at a time
    measurement_names: tuple[str, ...] = ()  # what a prediction's measurements are (the pipeline's)

    @property
    def probabilities(self) -> bool:
        """Whether its class scores are probabilities (else decision values: an SVM)."""
        clf = getattr(self, "classifier", None)
        return clf is None or hasattr(clf, "predict_proba")

    def __init__(self, spec: dict[str, Any], *, classes: Sequence[str], stain: StainNormaliser, seed: int = 0,
                 device: str = "auto"):
        self.spec, self.classes, self.stain, self.seed = dict(spec), list(classes), stain, seed
        self.device = device

    # ---- what subclasses provide ---------------------------------------------------------------
    def prepare(self, images: Sequence[np.ndarray]) -> Any:
        """What needs no fitted part: images made RGB and stain-normalised (networks: their input tensor).
        ``optileuk predict`` prepares the next batch while :meth:`run` works on this one."""
        return [self.stain(as_rgb(im)) for im in images]

    def run(self, prepared: Any) -> Prediction:
        raise NotImplementedError

    def tensors(self) -> dict[str, Any]:
        """torch tensors to keep (saved as safetensors)."""
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        """numpy arrays to keep (besides the stain reference)."""
        return {}

    def estimators(self) -> dict[str, Any]:
        """Fitted scikit-learn estimators to keep (saved with skops)."""
        return {}

    @classmethod
    def restore(cls, spec: dict[str, Any], *, classes: Sequence[str], stain: StainNormaliser, seed: int,
                device: str, tensors: dict[str, Any], arrays: dict[str, np.ndarray],
                estimators: dict[str, Any]) -> "FittedModel":
        return cls(spec, classes=classes, stain=stain, seed=seed, device=device)

    def describe(self) -> dict[str, Any]:
        """Facts for model.json beside the spec (input geometry, features); JSON-able."""
        return {}

    # ---- applying it ---------------------------------------------------------------------------
    @property
    def torch_device(self):
        from optileuk.objectives._torch import resolve_device

        return resolve_device(self.device)

    def apply(self, images: Sequence[np.ndarray]) -> Prediction:
        """The prediction of one batch of RGB images (any size), normalised to the model's stain first."""
        return self.run(self.prepare(images))

    def apply_many(self, images: Sequence[np.ndarray]) -> Prediction:
        """:meth:`apply` in batches of ``batch_size`` (what ``optileuk train`` scores the test split with,
        and ``optileuk predict`` applies to files: the same batches give the same numbers)."""
        if not len(images):
            raise DataError("no images given")
        return Prediction.concat([self.apply(images[s:s + self.batch_size])
                                  for s in range(0, len(images), self.batch_size)])

    def _batches(self, images: Iterable[Any]) -> Prediction:
        items = list(images)
        if not items:
            raise DataError("no images given")
        parts = []
        for s in range(0, len(items), self.batch_size):
            chunk = items[s:s + self.batch_size]
            parts.append(self.apply([read_any(x, f"images[{s + i}]") for i, x in enumerate(chunk)]))
        return Prediction.concat(parts)

    # ---- the user's API ------------------------------------------------------------------------
    def predict(self, images: Iterable[Any]) -> np.ndarray:
        """Class names of ``images`` (arrays of any usual layout, or image file paths)."""
        pred = self._batches(images)
        if pred.labels is None:
            raise DataError(f"a {self.kind} model segments; it does not classify (use segment)")
        return np.array(self.classes)[pred.labels]

    def scores(self, images: Iterable[Any]) -> np.ndarray:
        """(N, classes) class scores: probabilities, or a classifier's decision values (an SVM)."""
        pred = self._batches(images)
        if pred.scores is None:
            raise DataError(f"a {self.kind} model segments; it does not classify (use segment)")
        return pred.scores

    def predict_proba(self, images: Iterable[Any]) -> np.ndarray:
        """(N, classes) class probabilities, columns in the order of ``classes``."""
        pred = self._batches(images)
        if pred.scores is None:
            raise DataError(f"a {self.kind} model segments; it does not classify (use segment)")
        if not pred.probabilities:
            raise DataError("this model's classifier gives decision values, not probabilities (an SVM): "
                            "use scores()")
        return pred.scores

    def segment(self, images: Iterable[Any]) -> list[np.ndarray]:
        """Masks on each image's own pixels: uint8, 0 background, 1 cytoplasm (or the cell), 2 nucleus."""
        pred = self._batches(images)
        if pred.masks is None:
            raise DataError(f"a {self.kind} model classifies; it does not segment (use predict)")
        return pred.masks


class NetModel(FittedModel):
    """A fitted model around one torch network, ``self.net`` (kept as ``net.*`` tensors)."""

    net: Any

    def tensors(self) -> dict[str, Any]:
        return {f"net.{k}": v.detach().cpu() for k, v in self.net.state_dict().items()}

    @classmethod
    def restore(cls, spec, *, classes, stain, seed, device, tensors, arrays, estimators):
        from optileuk.objectives._torch import load_weights

        model = cls(spec, classes=classes, stain=stain, seed=seed, device="cpu")  # built from its spec ...
        load_weights(model.net, tensors, "net.")  # ... its weights checked against it ...
        model.device = device
        model.net.to(model.torch_device)  # ... then moved where it runs
        return model


class EnsembleModel(FittedModel):
    """A weighted vote of fitted models of one objective (``selection: ensemble:N``): every member
    applies its own path (stain, geometry, features, classifier or network) to the images, and the
    class with the largest share of the members' weights wins (a tie: the first member's class). Its
    scores are those vote shares; masks and measurements, where members give them, are the first
    (heaviest) member's.

    Example:
        >>> model = optileuk.load_model("runs/ensemble")  # doctest: +SKIP
        >>> model.predict(["cell.png"]), [m.kind for m in model.members]  # doctest: +SKIP
    """

    kind = "ensemble"

    def __init__(self, members: Sequence[FittedModel], weights: Sequence[float]):
        first = members[0]
        super().__init__({"members": len(members), "weights": [float(w) for w in weights]}, classes=first.classes,
                         stain=first.stain, seed=first.seed, device=first.device)
        self.members, self.weights = list(members), [float(w) for w in weights]
        self.task = first.task
        self.measurement_names = first.measurement_names

    @property
    def probabilities(self) -> bool:
        return True  # vote shares

    def prepare(self, images: Sequence[np.ndarray]) -> Any:
        return [as_rgb(im) for im in images]

    def run(self, images: Any) -> Prediction:
        from optileuk.folds import vote

        preds = [m.apply(images) for m in self.members]
        labels, shares = vote([p.labels for p in preds], self.weights, len(self.classes))
        first = preds[0]
        return Prediction(labels=labels, scores=shares, probabilities=True, masks=first.masks,
                          measurements=first.measurements, measurement_names=first.measurement_names)

    def describe(self) -> dict[str, Any]:
        return {"ensemble": {"members": [m.kind for m in self.members], "weights": self.weights,
                             "vote": "the class with the largest share of the members' weights; scores are the shares"},
                **self.members[0].describe()}


def read_any(item: Any, where: str) -> np.ndarray:
    """An image from an array or a file path, as RGB uint8."""
    if isinstance(item, (str, Path)):
        from optileuk.data import read_image

        return read_image(Path(item))
    return as_rgb(item, where)


def mask_labels(nucleus: np.ndarray | None, cell: np.ndarray | None) -> np.ndarray:
    """One uint8 mask from boolean nucleus and cell masks (either may be absent)."""
    ref = nucleus if nucleus is not None else cell
    out = np.zeros(ref.shape, np.uint8)
    if cell is not None:
        out[cell] = CELL
    if nucleus is not None:
        out[nucleus] = NUCLEUS
    return out
