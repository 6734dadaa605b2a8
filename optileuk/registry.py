"""Plug-in registries: built-ins and third-party plug-ins both come from entry points.

optileuk's own optimizers and objectives are declared in its ``pyproject.toml`` under the
entry-point groups ``optileuk.optimizers`` and ``optileuk.objectives``, exactly as a plug-in
package declares its own. A name registered twice with different targets is refused.

Example:
    >>> "pso" in OPTIMIZERS.names()
    True
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from optileuk.errors import OptileukError


class Registry:
    """Lazy name -> object map over one entry-point group.

    A name may take an argument after a colon (``mealpy:SCA.OriginalSCA``) when the registered
    object says so (``takes_argument``).
    """

    def __init__(self, group: str):
        self.group = group
        self._eps: dict[str, Any] | None = None
        self._loaded: dict[str, Any] = {}

    def _entry_points(self) -> dict[str, Any]:
        if self._eps is None:
            found: dict[str, Any] = {}
            for ep in entry_points(group=self.group):
                if ep.name in found and found[ep.name].value != ep.value:
                    raise OptileukError(
                        f"plug-in name '{ep.name}' in group {self.group} is registered twice "
                        f"({found[ep.name].value} and {ep.value})")
                found[ep.name] = ep
            self._eps = found
        return self._eps

    def names(self) -> list[str]:
        return sorted(self._entry_points())

    def resolve(self, name: str) -> tuple[Any, str | None] | None:
        """``(registered object, argument)`` or ``None`` when the name is unknown."""
        base, _, arg = str(name).partition(":")
        eps = self._entry_points()
        if base not in eps:
            return None
        if base not in self._loaded:
            self._loaded[base] = eps[base].load()
        obj = self._loaded[base]
        takes = getattr(obj, "takes_argument", False)
        if takes != bool(arg) and not (getattr(obj, "optional_argument", False) and not arg):
            return None
        return obj, (arg or None)

    def register(self, name: str, obj: Any) -> None:
        """Register an object in this process (tests, notebooks); entry points are the normal way."""
        eps = self._entry_points()
        if name in eps or name in self._loaded:
            raise OptileukError(f"plug-in name '{name}' in group {self.group} is already registered")
        self._loaded[name] = obj
        eps[name] = _Loaded(obj)

    def display_names(self) -> list[str]:
        out = []
        for n in self.names():
            obj = self.resolve(n) or self.resolve(f"{n}:x")
            takes = obj and getattr(obj[0], "takes_argument", False)
            hint = f":{getattr(obj[0], 'argument', '<Module>.<Class>')}" if takes else ""
            out.append(f"{n}[{hint}]" if takes and getattr(obj[0], "optional_argument", False) else f"{n}{hint}")
        return out


class _Loaded:
    def __init__(self, obj: Any):
        self._obj = obj
        self.value = repr(obj)

    def load(self) -> Any:
        return self._obj


OPTIMIZERS = Registry("optileuk.optimizers")
OBJECTIVES = Registry("optileuk.objectives")
