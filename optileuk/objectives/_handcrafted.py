"""Hand-crafted features + a classical classifier, scored by cross-validation on the search part.

The simple, fast baseline of the field (colour histograms, GLCM texture, nucleus shape; SVM,
KNN or logistic regression). Searchable parameters (any subset; others are refused):
``classifier`` (svm | knn | logreg | rf), ``C`` and ``gamma`` (svm), ``C`` (logreg),
``n_neighbors`` and ``weights`` (knn), ``n_estimators`` and ``max_depth`` (rf), ``class_weight``
(balanced, the default, | none) and ``scaling`` (standard | robust | none). The value is ``1 - balanced accuracy`` (minimised), the
mean over the validation folds; the test split is never looked at.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC

from optileuk.data import DatasetConfig, Resize, SplitConfig, Stain, SyntheticData, cached
from optileuk.features import FEATURE_NAMES, handcrafted_features
from optileuk.objectives._base import ClassifiesCells, Objective, ObjectiveConfig, Score
from optileuk.folds import OOF, REPEAT, options
from optileuk.objectives._final import Fitted, class_scores
from optileuk.objectives._inputs import cv_score, prepare_images
from optileuk.objectives._model import FittedModel, Prediction


class HandcraftedConfig(ObjectiveConfig):
    dataset: DatasetConfig = Field(default_factory=lambda: SyntheticData(type="synthetic"))
    split: SplitConfig = SplitConfig()
    classifier: Literal["svm", "knn", "logreg", "rf"] = "svm"
    image_size: int = Field(64, ge=16, le=512, description="images are resized to this side for features")
    resize: Resize = Field("stretch", description="how images become image_size squares (their height and width "
                           "are features of their own)")
    stain: Stain = Field("none", description="stain normalisation before features (none | reinhard | macenko)")
    stain_reference: Optional[str] = Field(None, description="image file to normalise to (default: search-part images)")


CLASSIFIER_DEFAULTS = {"C": 1.0, "gamma": "scale", "n_neighbors": 5, "weights": "uniform", "class_weight": "balanced",
                       "scaling": "standard", "n_estimators": 200, "max_depth": 0}
CLASSIFIER_PARAMS = ("classifier", *CLASSIFIER_DEFAULTS)


def build_classifier(config: Mapping[str, Any], default: str, seed: int):
    """A scikit-learn pipeline (scaler, classifier) from a candidate's settings.

    ``classifier``: svm (``C``, ``gamma``) | logreg (``C``) | knn (``n_neighbors``, ``weights``) | rf
    (``n_estimators``, ``max_depth``, 0 = unlimited); ``class_weight``: balanced (default: each class
    counts as much as any other, whatever its size) | none (knn has no class weights); ``scaling``:
    standard | robust | none, fitted on the training part of each fit only.
    """
    p = {**CLASSIFIER_DEFAULTS, **config}
    kind = p.get("classifier", default)
    weight = None if p["class_weight"] in (None, "none") else "balanced"
    if kind == "svm":
        clf = SVC(C=float(p["C"]), gamma=p["gamma"], class_weight=weight, random_state=seed)
    elif kind == "knn":
        clf = KNeighborsClassifier(n_neighbors=int(p["n_neighbors"]), weights=p["weights"])
    elif kind == "rf":
        clf = RandomForestClassifier(n_estimators=int(p["n_estimators"]), max_depth=int(p["max_depth"]) or None,
                                     class_weight=weight, random_state=seed, n_jobs=1)
    else:
        clf = LogisticRegression(C=float(p["C"]), class_weight=weight, max_iter=3000)
    scaler = {"standard": StandardScaler(), "robust": RobustScaler(), "none": "passthrough"}[p["scaling"]]
    return Pipeline([("scale", scaler), ("classify", clf)])


class HandcraftedObjective(ClassifiesCells, Objective):
    deterministic = True  # seeded: the same config scores the same
    Config = HandcraftedConfig
    config: HandcraftedConfig

    resamples = predicts_oof = True

    def check_space(self, space) -> list[str]:
        return self.unused(space, CLASSIFIER_PARAMS, "handcrafted")

    def default_params(self) -> dict[str, Any]:
        return {"classifier": self.config.classifier, **CLASSIFIER_DEFAULTS}

    def prepare(self) -> None:
        if self._data is None:
            c = self.config
            data = self.prepared = prepare_images(c, self.seed)
            ds, splits = data.ds, data.splits
            self.split_sizes = data.sizes()
            key = {"dataset": c.dataset.model_dump(mode="json"), "paths": ds.paths, "size": c.image_size,
                   "features": FEATURE_NAMES, "resize": c.resize, "stain": c.stain, "reference": c.stain_reference,
                   "search": splits.search.tolist() if c.stain != "none" else None}
            X = cached("features", key, lambda: handcrafted_features(data.stained.images(c.stain), c.image_size, c.resize))
            self._data = (data, X)

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        self.prepare()
        data, X = self._data
        ds = data.ds
        config, opts = options(config)
        folds = data.folds(opts.get(REPEAT))
        preds = [build_classifier(config, self.config.classifier, self.seed).fit(X[f.train], ds.labels[f.train])
                 .predict(X[f.val]) for f in folds]
        value, attrs = cv_score(data, folds, preds, self.seed, oof=opts.get(OOF, False))
        return Score(value, attrs)

    def fit_final(self, params: Mapping[str, Any], *, on_step=None) -> Fitted:
        """Fit the classifier on the whole search part."""
        self.prepare()
        data, X = self._data
        ds, splits, c = data.ds, data.splits, self.config
        clf = build_classifier(params, c.classifier, self.seed).fit(X[splits.search], ds.labels[splits.search])
        if on_step:
            on_step(1, 1, "classifier fitted")
        model = HandcraftedModel({"image_size": c.image_size, "resize": c.resize}, classes=ds.classes,
                                 stain=data.stained.normaliser(c.stain), seed=self.seed, classifier=clf)
        return Fitted(model, facts={"search_images": len(splits.search), "features": len(FEATURE_NAMES)})


class HandcraftedModel(FittedModel):
    """Hand-crafted features of each (stain-normalised) image, then the fitted scaler and classifier."""

    kind, task = "handcrafted", "classification"

    def __init__(self, spec, *, classes, stain, seed=0, device="auto", classifier=None):
        super().__init__(spec, classes=classes, stain=stain, seed=seed, device=device)
        self.classifier = classifier

    def run(self, images):
        X = handcrafted_features(images, int(self.spec["image_size"]), self.spec["resize"])
        return classify(self.classifier, X, len(self.classes))

    def estimators(self):
        return {"classifier": self.classifier}

    @classmethod
    def restore(cls, spec, *, classes, stain, seed, device, tensors, arrays, estimators):
        return cls(spec, classes=classes, stain=stain, seed=seed, device=device, classifier=estimators["classifier"])

    def describe(self):
        return {"input": {"image_size": self.spec["image_size"], "resize": self.spec["resize"]},
                "features": {"names": list(FEATURE_NAMES)}}


def classify(classifier, X: np.ndarray, n_classes: int) -> Prediction:
    """A fitted scikit-learn classifier's labels and per-class scores (probabilities when it has them)."""
    scores, kind = class_scores(classifier, X, n_classes)
    return Prediction(labels=classifier.predict(X).astype(np.int64), scores=scores, probabilities=kind == "probability")


HandcraftedObjective.Model = HandcraftedModel  # what train_final fits and optileuk predict applies
