"""The project's error types.

Every mistake a user can make ends in an :class:`OptileukError`; the CLI prints its message
(one line per problem) and exits with code 2. Config errors are also ``ValueError`` so that
library users can catch them the usual way.

Example:
    >>> err = ConfigError([Problem("studies/x.yaml", "optimizer.population", "must be >= 2", 0)])
    >>> str(err)
    'studies/x.yaml: optimizer.population must be >= 2, got 0'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

_MISSING = object()


class OptileukError(Exception):
    """Base class of every error optileuk raises for a user's mistake or environment."""


@dataclass(frozen=True)
class Problem:
    """One problem in one file: where it is, which rule it breaks and what was given."""

    file: str
    path: str
    rule: str
    value: Any = _MISSING

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        key = f"{self.path} " if self.path else ""
        got = "" if self.value is _MISSING else f", got {_show(self.value)}"
        return f"{where}{key}{self.rule}{got}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(OptileukError, ValueError):
    """One or more problems found while validating a study or search-space file."""

    def __init__(self, problems: Iterable[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("", "", problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StorageError(OptileukError):
    """The study storage cannot be reached or does not hold what was asked for."""


class DataError(OptileukError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent."""


def missing() -> Any:
    """The sentinel that means "no value to show" in a :class:`Problem`."""
    return _MISSING
