"""Stain normalisation to a reference: Reinhard (CIE Lab statistics) and Macenko (stain vectors in
optical density), from torchstain's NumPy back end.

Stain, scanner and camera change from lab to lab; both methods map each image's colours onto a
reference's. The reference is fitted on a montage of pixels drawn from the images of the search
part (never the test split), or on an image file the user names (``stain_reference``).

Macenko needs stained pixels to estimate two stain vectors, Reinhard a spread of colours to
standardise; an image where they cannot (almost blank, one flat colour, a degenerate stain plane)
is kept as it was and counted (``failures``), never hidden.
"""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

import numpy as np
from optileuk.errors import DataError

Stain = Literal["none", "reinhard", "macenko"]
STAIN_METHODS = ("none", "reinhard", "macenko")
_MONTAGE_PIXELS = 200_000


def montage(images: Sequence[np.ndarray], seed: int = 0, pixels: int = _MONTAGE_PIXELS) -> np.ndarray:
    """A (N, 1, 3) uint8 'image' of pixels drawn evenly from ``images`` (the reference's statistics)."""
    rng = np.random.default_rng(seed)
    per = max(1, pixels // max(1, len(images)))
    parts = []
    for im in images:
        flat = np.asarray(im).reshape(-1, 3)
        parts.append(flat[rng.choice(len(flat), size=min(per, len(flat)), replace=False)])
    return np.concatenate(parts)[:, None, :].astype(np.uint8)


class StainNormaliser:
    """Fitted to a reference; ``normaliser(image)`` returns the image in the reference's stain.

    Example:
        >>> ref = np.full((8, 8, 3), (150, 80, 160), np.uint8); ref[::2] = (220, 200, 220)
        >>> img = np.clip(ref.astype(int) + 25, 0, 255).astype(np.uint8)
        >>> out = StainNormaliser("reinhard", [ref])(img)
        >>> int(np.abs(out.astype(int) - ref).mean()) < int(np.abs(img.astype(int) - ref).mean())
        True
    """

    def __init__(self, method: str, reference: Sequence[np.ndarray], *, seed: int = 0):
        if method not in STAIN_METHODS:
            raise ValueError(f"stain must be one of {', '.join(STAIN_METHODS)}, not {method!r}")
        self.method = method
        self.failures = 0
        self._norm = None
        if method == "none":
            return
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        target = montage(reference, seed)
        self._norm = NumpyReinhardNormalizer() if method == "reinhard" else NumpyMacenkoNormalizer()
        try:
            self._norm.fit(target)
        except (np.linalg.LinAlgError, ValueError, IndexError) as exc:
            raise DataError(f"stain: {method} cannot be fitted to the reference ({type(exc).__name__}: {exc}); "
                            "the reference images hold too few stained pixels (stain_reference)") from None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._norm is None:
            return image
        img = np.ascontiguousarray(image, dtype=np.uint8)
        if self.method == "reinhard":
            with warnings.catch_warnings(record=True) as caught:  # a flat image: no spread to standardise
                warnings.simplefilter("always", RuntimeWarning)
                out = self._norm.normalize(img)
            if any(issubclass(w.category, RuntimeWarning) for w in caught):
                self.failures += 1
                return image
            return out
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a blank image: counted below instead
                out = self._norm.normalize(I=img, stains=False)[0]
        except (np.linalg.LinAlgError, ValueError, IndexError):
            out = None
        if out is None or not np.isfinite(out).all():
            self.failures += 1
            return image
        return out

    def apply(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self(im) for im in images]

    def state(self) -> dict[str, np.ndarray]:
        """The fitted reference as arrays (what a model bundle keeps): Reinhard's target Lab means and
        standard deviations, Macenko's stain matrix and maximum concentrations; none for ``none``."""
        if self.method == "reinhard":
            return {"target_means": np.asarray(self._norm.target_means), "target_stds": np.asarray(self._norm.target_stds)}
        if self.method == "macenko":
            return {"HERef": np.asarray(self._norm.HERef), "maxCRef": np.asarray(self._norm.maxCRef)}
        return {}

    @classmethod
    def from_state(cls, method: str, state: dict[str, np.ndarray]) -> "StainNormaliser":
        """A normaliser fitted to the reference :meth:`state` describes (no image needed).

        Example:
            >>> ref = np.full((8, 8, 3), (150, 80, 160), np.uint8); ref[::2] = (220, 200, 220)
            >>> a = StainNormaliser("reinhard", [ref])
            >>> b = StainNormaliser.from_state("reinhard", a.state())
            >>> bool((a(ref) == b(ref)).all())
            True
        """
        out = cls("none", [])
        out.method = method
        if method == "none":
            return out
        if method not in STAIN_METHODS:
            raise ValueError(f"stain must be one of {', '.join(STAIN_METHODS)}, not {method!r}")
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        want = ("target_means", "target_stds") if method == "reinhard" else ("HERef", "maxCRef")
        missing = [k for k in want if k not in state]
        if missing:
            raise ValueError(f"the {method} stain reference lacks {', '.join(missing)}")
        out._norm = NumpyReinhardNormalizer() if method == "reinhard" else NumpyMacenkoNormalizer()
        for key in want:
            setattr(out._norm, key, np.asarray(state[key]))
        return out


def stain_jitter_od(x, sigma: float, generator=None):
    """Stain augmentation for a (N, 3, H, W) batch in [0, 1]: each image's optical density per
    channel is scaled by 1 + U(-sigma, sigma) and shifted by U(-sigma, sigma) / 4 (as in HED jitter,
    Tellez et al. 2018, applied to the RGB optical densities)."""
    import torch

    if sigma <= 0:
        return x
    n = x.shape[0]
    scale = 1 + (torch.rand(n, 3, 1, 1, generator=generator, device="cpu") * 2 - 1).to(x.device) * sigma
    shift = (torch.rand(n, 3, 1, 1, generator=generator, device="cpu") * 2 - 1).to(x.device) * sigma / 4
    od = -torch.log(x.clamp(1 / 255, 1))
    return torch.exp(-(od * scale + shift).clamp(min=0)).clamp(0, 1)
