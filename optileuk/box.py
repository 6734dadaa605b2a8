"""The numeric box optimizers move in: the contract between a search space and an optimizer.

Optimizers never see parameter types. They see a box of ``dim`` coordinates with bounds and a
*kind* per coordinate, so that an optimizer with a special move for bits (binary PSO, bit-flip
mutation) or for unordered choices (TPE) can use it. Any point inside the box decodes to a
valid configuration.

Example:
    >>> import numpy as np
    >>> box = Box(np.zeros(2), np.ones(2), ("real", "binary"))
    >>> box.dim, box.binary.tolist()
    (2, [False, True])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("real", "int", "choice", "binary")


@dataclass(frozen=True)
class Box:
    """Bounds and kinds of the encoded search space.

    Attributes:
        lower: lower bound per coordinate.
        upper: upper bound per coordinate (``upper >= lower``).
        kinds: one of ``real``, ``int``, ``choice`` or ``binary`` per coordinate.
        choices: number of options of each ``choice`` coordinate (0 elsewhere).
    """

    lower: np.ndarray
    upper: np.ndarray
    kinds: tuple[str, ...]
    choices: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower", np.asarray(self.lower, dtype=float))
        object.__setattr__(self, "upper", np.asarray(self.upper, dtype=float))
        if not self.choices:
            object.__setattr__(self, "choices", (0,) * len(self.kinds))
        if not (len(self.lower) == len(self.upper) == len(self.kinds) == len(self.choices)):
            raise ValueError("Box: lower, upper, kinds and choices must have the same length")
        if np.any(self.upper < self.lower):
            raise ValueError("Box: every upper bound must be >= its lower bound")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"Box: unknown kinds {sorted(unknown)}; valid: {KINDS}")

    @property
    def dim(self) -> int:
        return len(self.kinds)

    @property
    def binary(self) -> np.ndarray:
        """Boolean array: which coordinates are bits."""
        return np.array([k == "binary" for k in self.kinds], dtype=bool)

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lower, self.upper)

    def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points drawn uniformly in the box (bits drawn as 0/1)."""
        x = rng.uniform(self.lower, self.upper, size=(n, self.dim))
        bits = self.binary
        if bits.any():
            x[:, bits] = rng.integers(0, 2, size=(n, int(bits.sum())))
        return x
