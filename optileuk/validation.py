"""Reading YAML files and turning pydantic validation errors into the project's messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from optileuk.errors import ConfigError, Problem, missing

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path, *, what: str = "file") -> Any:
    """Read one YAML file, or raise :class:`ConfigError` naming the file and the problem."""
    path = Path(path)
    shown = str(path)
    if not path.exists():
        raise ConfigError([Problem(shown, "", f"{what} not found")])
    if path.is_dir():
        raise ConfigError([Problem(shown, "", f"{what} is a folder, expected a YAML file")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, "", f"cannot be read ({exc.__class__.__name__}: {exc})")])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([Problem(shown, "", f"is not valid YAML ({where}{reason})")])
    return data


def join(*parts: Any) -> str:
    """Dotted key path; list indices are shown as ``[i]``."""
    out = ""
    for part in parts:
        if part in (None, ""):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_RULES = {
    "missing": "is required",
    "extra_forbidden": "is not a known key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "finite_number": "must be a finite number",
}


_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


def _rule(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _RULES:
        return _RULES[kind]
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        return f"must be {op} {ctx[key]}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '')}".rstrip()
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"needs the key '{ctx.get('discriminator', '').strip(chr(39))}'"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return msg
    return err["msg"][:1].lower() + err["msg"][1:]


def problems_from(exc: ValidationError, file: str, prefix: Sequence[Any] = (), data: Any = None) -> list[Problem]:
    """Turn one pydantic ``ValidationError`` into :class:`Problem` s (one per error). With the
    validated ``data``, the tags discriminated unions add to a location (``dataset.synthetic.x``)
    are dropped: the path is the one in the file (``dataset.x``)."""
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        # discriminated unions add the tag as a path element: drop it
        tag_free = [p for i, p in enumerate(loc) if not (i > 0 and _is_tag(p, err))]
        if data is not None:
            tag_free = _file_path(tag_free, data)
        path = join(*prefix, *tag_free)
        value = err.get("input", missing())
        if err["type"] in ("missing", "union_tag_not_found", "value_error"):
            value = missing()
        rule = _rule(err)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err)
            if allowed:
                rule += f" (valid keys: {', '.join(allowed)})"
            value = missing()
        problems.append(Problem(file, path, rule, value))
    return problems


def _file_path(loc: list, data: Any) -> list:
    """``loc`` without the parts that are not keys of ``data`` but its ``type`` (a union's tag)."""
    out, node = [], data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # the tag of a discriminated union
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    return out


def _is_tag(part: Any, err: dict[str, Any]) -> bool:
    return isinstance(part, str) and part.startswith("tag:")


def _allowed_keys(err: dict[str, Any]) -> list[str]:
    return list(err.get("ctx", {}).get("allowed", [])) if err.get("ctx") else []


def validate(model: type[M], data: Any, file: str, prefix: Sequence[Any] = ()) -> tuple[M | None, list[Problem]]:
    """Validate ``data`` against ``model``; return the instance or the problems (never both)."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from(exc, file, prefix, data)


def valid_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def check_keys(model: type[BaseModel], data: Any, file: str, prefix: Sequence[Any]) -> list[Problem]:
    """Unknown keys reported with the list of valid ones (pydantic's message lacks it)."""
    if not isinstance(data, dict):
        return []
    known = valid_keys(model)
    return [
        Problem(file, join(*prefix, key), f"is not a known key (valid keys: {', '.join(known)})")
        for key in data
        if key not in known
    ]
