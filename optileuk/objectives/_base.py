"""The objective contract: a plain Optuna objective *and* ``evaluate(config)`` for the runner."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Mapping, Sequence

import optuna
from pydantic import BaseModel, ConfigDict, Field

from optileuk.errors import ConfigError, DataError, Problem
from optileuk.objectives._trunk import read_trunk, trunk_file, trunk_mismatch
from optileuk.space import SearchSpace

Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                              description="auto (CUDA when present, else the CPU), cpu, cuda, cuda:<i> or mps")]
"""The ``device`` field of objectives that run torch; checked against this machine by
:meth:`Objective.space_problems` (at load time, not mid-run)."""


class ObjectiveConfig(BaseModel):
    """Base of every objective's typed config (the study file's ``objective`` keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def anchored(self, base: "Path") -> "ObjectiveConfig":
        """This config with relative file paths (``dataset.path``, ``stain_reference``, ``weights``,
        ``trunk.weights``) made absolute
        against ``base``, the folder of the file that names them (the study file, the training config)."""
        def fix(value: str) -> str:
            p = Path(value).expanduser()
            return value if p.is_absolute() else os.path.abspath(base / p)

        update = {}
        ds = getattr(self, "dataset", None)
        if isinstance(getattr(ds, "path", None), str):
            update["dataset"] = ds.model_copy(update={"path": fix(ds.path)})
        for key in ("stain_reference", "weights"):
            if isinstance(getattr(self, key, None), str):
                update[key] = fix(getattr(self, key))
        trunk = getattr(self, "trunk", None)
        if isinstance(getattr(trunk, "weights", None), str):
            update["trunk"] = trunk.model_copy(update={"weights": fix(trunk.weights)})
        return self.model_copy(update=update) if update else self

    def file_digests(self) -> dict[str, str]:
        """SHA-256 of each file the config names (``stain_reference``, ``weights``, ``trunk.weights``; a
        run folder: the trunk file in it), by key path, for files that exist. A study's fingerprint holds
        them: a trunk trained again under the same name makes a different study, not a resumed one."""
        out = {}
        for key in ("stain_reference", "weights", "trunk.weights"):
            value = self
            for part in key.split("."):
                value = getattr(value, part, None)
            if not isinstance(value, str):
                continue
            try:
                path = trunk_file(value) if key != "stain_reference" else Path(value).expanduser()
                st = path.resolve().stat()
            except (DataError, OSError):  # missing: refused at load time (file_problems), not here
                continue
            out[key] = _sha256(path.resolve(), st.st_mtime_ns, st.st_size)
        return out

    def file_problems(self, src: str) -> list:
        """Problems with files the config names, checked at load time (nothing is created before)."""
        out = []
        ref = getattr(self, "stain_reference", None)
        if isinstance(ref, str) and not Path(ref).expanduser().is_file():
            out.append(Problem(src, "objective.stain_reference", "must name an existing image file "
                               "(relative paths are read from the study file's folder)", ref))
        weights = getattr(self, "weights", None)
        if isinstance(weights, str):
            out += self._weights_problems(src, weights)
        return out

    def _weights_problems(self, src: str, weights: str) -> list:
        """A ``weights`` trunk that is missing, unreadable or does not fit ``widths`` / the input size."""
        p = Path(weights).expanduser()
        if not p.exists():
            return [Problem(src, "objective.weights", "must name a local file or run folder (weights file not found; weights are "
                            "never downloaded; relative paths are read from the study file's folder)", weights)]
        try:
            trunk = read_trunk(p)
        except DataError as exc:
            return [Problem(src, "objective.weights", str(exc), weights)]
        size_key = "trunk_size" if hasattr(self, "trunk_size") else "image_size"
        return [Problem(src, key, rule, value) for key, rule, value in
                trunk_mismatch(trunk, getattr(self, size_key), getattr(self, "widths"), size_key)]


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    """A file's SHA-256, read once per version of the file (a study's fingerprint is taken twice per run)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ClassifiesCells:
    """Mixin of objectives that classify cells (``class X(ClassifiesCells, Objective)``): the metrics
    their trials record (computed by :func:`optileuk.metrics.scores`) and what their value means."""

    METRICS: ClassVar[tuple[str, ...]] = ("balanced_accuracy", "accuracy", "macro_f1")

    @classmethod
    def value_meaning(cls, config: Any = None) -> str:
        return "1 - balanced accuracy"


@dataclass
class Score:
    """What one evaluation gives: the value(s) and facts worth keeping as trial user attrs."""

    value: float | tuple[float, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


_PREPARE_STEP: contextvars.ContextVar[Callable[[int, int, str], None] | None] = contextvars.ContextVar(
    "optileuk_prepare_step", default=None)


@contextlib.contextmanager
def preparing(on_step: Callable[[int, int, str], None] | None):
    """Within the block, :func:`prepare_step` calls from an objective's ``prepare`` reach ``on_step(done,
    total, what)`` (the CLI draws a progress bar for the slow parts: CNN trunks, feature extraction)."""
    token = _PREPARE_STEP.set(on_step)
    try:
        yield
    finally:
        _PREPARE_STEP.reset(token)


def prepare_step(done: int, total: int, what: str) -> None:
    on_step = _PREPARE_STEP.get()
    if on_step is not None:
        on_step(done, total, what)


class Objective(ABC):
    """Base class of objectives.

    Subclasses set ``Config`` and implement :meth:`evaluate`. The same object works in a plain
    Optuna study::

        objective = AnalyticObjective({"function": "sphere"}, space=space)
        optuna.create_study().optimize(objective, n_trials=20)

    Args:
        config: the objective's settings (a mapping or its ``Config`` model).
        space: the search space ``__call__`` suggests from (not needed for ``evaluate``).
        seed: seed of everything random in the objective.
    """

    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    direction: ClassVar[str] = "minimize"
    takes_argument: ClassVar[bool] = False
    primary: ClassVar[str] = "value"  # the name of Score.value in an ``objectives`` list
    VALUES: ClassVar[dict[str, str]] = {}  # other values an evaluation reports (a Score.attrs key -> direction)
    METRICS: ClassVar[tuple[str, ...]] = ()  # recorded metrics (Score.attrs keys) summaries show beside the value
    # the same config always scores the same (seeded): ``runner.reuse_duplicates: auto`` then reuses a
    # complete trial's value for a candidate equal to it; plug-ins are assumed not to be unless they say so
    deterministic: ClassVar[bool] = False
    batches: ClassVar[bool] = False  # evaluate_many is faster than evaluate one by one (the inline executor uses it)
    # the fitted model class train_final returns (optileuk.objectives._model.FittedModel), None: no final model
    Model: ClassVar[type | None] = None
    # evaluates a candidate on the folds of one new repeat when its config holds optileuk.repeat (selection: race)
    resamples: ClassVar[bool] = False
    # records out-of-fold predictions when its config holds optileuk.oof (selection: ensemble)
    predicts_oof: ClassVar[bool] = False

    @classmethod
    def value_meaning(cls, config: Any = None) -> str:
        """What the main value is, for summaries (e.g. ``1 - balanced accuracy``); empty if just a value."""
        return ""

    def __init__(self, config: ObjectiveConfig | Mapping[str, Any] | None = None, *,
                 space: SearchSpace | None = None, seed: int = 0, objectives: Sequence[str] | None = None):
        self.config = config if isinstance(config, self.Config) else self.Config.model_validate(dict(config or {}))
        problems = self.config.file_problems("")
        if problems:
            raise ConfigError(problems)
        self.seed = seed
        self.objectives = list(objectives) if objectives else None
        unknown = [n for n in self.objectives or [] if n not in self.value_names()]
        if unknown:
            raise ValueError(f"{type(self).__name__} reports no value {unknown[0]!r} "
                             f"(it reports: {', '.join(self.value_names())})")
        self._space = space
        self._bound: SearchSpace | None = None
        self._data: Any = None  # what prepare() loads (dataset, tensors, features), once
        self.split_sizes: dict[str, int] | None = None  # images per split, once prepare() made them
        self.prepared = None  # image objectives: the Prepared data part (objectives._inputs), once prepare() made it

    # ---- the values it optimizes -----------------------------------------------------------------
    @classmethod
    def value_names(cls) -> dict[str, str]:
        """Every value an evaluation reports, with its direction: the main one first."""
        return {cls.primary: cls.direction, **cls.VALUES}

    @property
    def directions(self) -> list[str]:
        """One direction per optimized value (``objectives``, else the main value alone)."""
        names = self.value_names()
        return [names[n] for n in self.objectives] if self.objectives else [self.direction]

    def values_of(self, score: "Score") -> float | tuple[float, ...]:
        """The optimized value(s) of a score: the main value, or the ``objectives`` in their order."""
        if not self.objectives:
            return score.value
        out = []
        for name in self.objectives:
            v = score.value if name == self.primary else score.attrs.get(name)
            if v is None:
                raise ValueError(f"the evaluation reported no {name!r}")
            out.append(float(v))
        return tuple(out)

    # ---- the search space -----------------------------------------------------------------------
    def mask_lengths(self) -> dict[str, int]:
        """Lengths of ``length: auto`` masks (e.g. the feature count). Default: none."""
        return {}

    def check_space(self, space: SearchSpace) -> list[str]:
        """Problems with using ``space`` for this objective (one sentence each).

        May raise :class:`~optileuk.errors.ConfigError` for problems in the objective's own config.
        """
        return []

    @staticmethod
    def unused(space: SearchSpace, known, name: str) -> list[str]:
        """One problem per parameter of ``space`` the objective ``name`` does not read."""
        return [f"parameter '{n}' is not used by the {name} objective (it uses: {', '.join(known)})"
                for n in space.params if n not in known]

    def space_problems(self, space: SearchSpace) -> list[str]:
        """What is wrong with ``space`` for this objective (the device checked first): what a study
        file's loader reports."""
        self.check_device()
        return self.check_space(space)

    def check_device(self) -> None:
        """Fail at load time (not mid-run) when the configured device does not exist here."""
        device = getattr(self.config, "device", None)
        if device is not None:
            from optileuk.objectives._torch import resolve_device

            resolve_device(device)

    def prepare(self) -> None:
        """Load data and anything else slow or fallible, before the first evaluation."""

    def default_params(self) -> dict[str, Any] | None:
        """The full configuration a candidate that sets nothing is evaluated with (what ``optileuk assess
        --untuned`` trains, and the anchor of ``selection: anchored``); ``None``: the objective has no
        defaults to compare with."""
        return None

    def inputs(self) -> dict[str, Any]:
        """What the objective reads besides its config, for a study's fingerprint (a study resumes only
        on the same inputs): ``files``, the SHA-256 of each file its config names (a trunk, a stain
        reference); ``data``, once prepared, its images (:meth:`Prepared.identity`: class counts
        and a hash of the sorted file names, wherever the folder lies; not the pixels). Empty entries
        are left out; plug-ins may add their own."""
        out: dict[str, Any] = {}
        digests = getattr(self.config, "file_digests", dict)()  # (a plug-in's config may not be an ObjectiveConfig)
        if digests:
            out["files"] = digests
        if self.prepared is not None:
            out["data"] = self.prepared.identity()
        return out

    def bind(self, space: SearchSpace) -> SearchSpace:
        return space.bind(self.mask_lengths()) if any(
            getattr(p, "length", None) == "auto" for p in space.params.values()) else space

    @property
    def space(self) -> SearchSpace:
        if self._bound is None:
            if self._space is None:
                raise ValueError(f"{type(self).__name__} was created without a search space; pass space=...")
            self._bound = self.bind(self._space)
        return self._bound

    # ---- evaluation -----------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, config: Mapping[str, Any], *, trial: optuna.trial.BaseTrial | None = None) -> Score:
        """Score one configuration. ``trial`` (when given) receives intermediate reports."""

    def evaluate_many(self, configs: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Score several configurations; objectives that do it faster together than one by one (e.g.
        one distance matrix for a population of feature masks) override it and set ``batches``."""
        return [self.evaluate(c) for c in configs]

    def fit_final(self, params: Mapping[str, Any], *, on_step=None):
        """Fit ``params`` on the whole search part (everything but the test split; all the data when
        ``split.test_size`` is 0) and return a :class:`~optileuk.objectives._final.Fitted` holding
        the :class:`~optileuk.objectives._model.FittedModel`. ``on_step(done, total, what)`` drives
        a progress bar."""
        raise ConfigError([Problem("", "objective.type", "has no final model to train (optileuk train works for "
                                   "dknn, unet_plr, segmentation, handcrafted, feature_selection and pipeline)",
                                   type(self).__name__)])

    def train_final(self, params: Mapping[str, Any], *, on_step=None,
                    ensemble: Sequence[tuple[Mapping[str, Any], float]] | None = None):
        """Fit ``params`` on the whole search part and score once on the test split (``optileuk train``),
        through the fitted model's own path for new images. With ``ensemble`` (``(params, weight)`` of each
        member, ``selection: ensemble``) every member is fitted and their weighted vote is the model.
        Returns a :class:`~optileuk.objectives._final.Final`."""
        from optileuk.objectives._final import final_classification, final_segmentation, require_test

        self.prepare()
        data = self.prepared
        if data is not None:  # refused before anything is fitted
            require_test(data.splits.test)
        fitted = self._fit_ensemble(ensemble, on_step) if ensemble else self.fit_final(params, on_step=on_step)
        if data is None:  # a plug-in objective without the shared data part
            raise ConfigError([Problem("", "objective.type", "has no prepared images to score a final model on",
                                       type(self).__name__)])
        common = dict(training_data=data.fingerprint(), facts=fitted.facts, metrics=fitted.metrics)
        if fitted.model.task == "segmentation":
            final = final_segmentation(fitted.model, data.ds, data.splits, fitted.model.spec["target"], **common)
        else:
            final = final_classification(fitted.model, data.ds, data.splits, **common)
        final.predictions.update(fitted.predictions)
        return final

    def _fit_ensemble(self, members: Sequence[tuple[Mapping[str, Any], float]], on_step=None):
        from optileuk.objectives._final import Fitted
        from optileuk.objectives._model import EnsembleModel

        fits = [self.fit_final(p, on_step=on_step) for p, _ in members]
        if fits[0].model.task == "segmentation":
            raise ConfigError([Problem("", "ensemble", "votes between classifiers; this objective segments",
                                       type(self).__name__)])
        model = EnsembleModel([f.model for f in fits], [float(w) for _, w in members])
        return Fitted(model, facts={"members": [f.facts for f in fits], "weights": model.weights})

    def __call__(self, trial: optuna.trial.BaseTrial) -> float | tuple[float, ...]:
        start = time.perf_counter()
        score = self.evaluate(self.space.suggest(trial), trial=trial)
        sizes = {"split_sizes": self.split_sizes} if self.split_sizes else {}
        for key, value in {**sizes, **score.attrs, "seconds": time.perf_counter() - start}.items():
            trial.set_user_attr(key, value)
        return self.values_of(score)
