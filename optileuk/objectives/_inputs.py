"""What every image objective shares: the dataset's images in a chosen stain, fitted without the test split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from optileuk.data import Dataset, read_image
from optileuk.data._stain import StainNormaliser
from optileuk.errors import ConfigError, DataError, Problem

INPUT_KEYS = ("image_size", "resize", "stain")  # searchable; defaults are the objective's keys of the same names


def with_inputs(defaults: dict, config, candidate) -> dict:
    """A candidate's full parameters: the objective's defaults, its input keys, ``config.defaults``, the candidate."""
    return {**defaults, **{k: getattr(config, k) for k in INPUT_KEYS}, **config.defaults, **candidate}


def check_sizes(space, default: int, divisor: int, why: str) -> list[str]:
    """Every ``image_size`` the search can take (or the objective's own) must be a multiple of
    ``divisor``: a problem for the search space, or a :class:`ConfigError` for ``objective.image_size``."""
    p = space.params.get("image_size")
    if p is None:
        if default % divisor:
            raise ConfigError([Problem("", "objective.image_size", f"must be divisible by {why} = {divisor}", default)])
        return []
    sizes = p.choices if getattr(p, "choices", None) else range(int(p.low), int(p.high) + 1, int(p.step or 1))
    bad = [int(s) for s in sizes if int(s) % divisor]
    return [f"image_size must take multiples of {why} = {divisor} only (got {bad[0]}; use choices, or step: "
            f"{divisor} from a multiple)"] if bad else []


class StainedImages:
    """``images(method)``: every image of ``ds`` normalised by ``method`` (none | reinhard | macenko),
    computed once per method. The reference is the image file ``reference`` when given, else a
    montage of the ``fit_on`` images (the search part: never the test split). ``failures[method]``
    counts images Macenko could not normalise (kept as they were)."""

    def __init__(self, ds: Dataset, fit_on, reference: str | None = None, seed: int = 0):
        self.ds, self.fit_on, self.reference, self.seed = ds, np.asarray(fit_on, dtype=int), reference, seed
        self._done: dict[str, list[np.ndarray]] = {"none": ds.images}
        self.failures: dict[str, int] = {}

    def images(self, method: str) -> list[np.ndarray]:
        if method not in self._done:
            ref = [read_image(Path(self.reference))] if self.reference else [self.ds.images[i] for i in self.fit_on]
            norm = StainNormaliser(method, ref, seed=self.seed)
            self._done[method] = norm.apply(self.ds.images)
            self.failures[method] = norm.failures
        return self._done[method]

    def dataset(self, method: str) -> Dataset:
        return self.ds if method == "none" else replace(self.ds, images=self.images(method))


def check_defaults(defaults, valid, name: str) -> None:
    """Refuse ``objective.defaults`` keys that are not parameters of the objective ``name``."""
    unknown = set(defaults) - set(valid)
    if unknown:
        raise ConfigError([Problem("", f"objective.defaults.{sorted(unknown)[0]}",
                                   f"is not a {name} parameter (valid: {', '.join(valid)})")])


def selection_mask(value, n: int, name: str) -> np.ndarray:
    """A feature mask of ``n`` bits from ``value``: bits, or the selected indices (as exported)."""
    if isinstance(value, (list, tuple)) and (len(value) != n or any(int(i) > 1 for i in value)):
        if any(not 0 <= int(i) < n for i in value):
            raise ConfigError([Problem("", name, f"indices must be in 0..{n - 1}", value)])
        value = np.isin(np.arange(n), [int(i) for i in value])
    mask = np.asarray(value, dtype=bool)
    if mask.shape != (n,):
        raise ConfigError([Problem("", name, f"must have {n} bits", mask.shape)])
    return mask


def load_trunk(weights: str, n_classes: int, image_size: int, widths):
    """A DKNN whose trunk comes from the local ``state_dict`` file ``weights`` (never downloaded)."""
    import torch

    from optileuk.models import DKNN

    net = DKNN(n_classes, image_size=image_size, widths=tuple(widths), ranks=(2, 1))
    try:
        state = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
        net.trunk.load_state_dict({k.removeprefix("trunk."): v for k, v in state.items() if k.startswith("trunk.")})
    except Exception as exc:
        raise DataError(f"{weights}: not a DKNN state_dict with matching trunk widths {list(widths)} ({exc})") from None
    return net
