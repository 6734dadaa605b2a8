"""Pooling an assessment's held-out parts: one figure per approach with a bootstrap interval over the
pooled items, the per-part table, the configs chosen, the optimism of the search's own figure, and
paired differences between approaches on the same items."""

from __future__ import annotations

from typing import Any

import numpy as np

N_BOOT = 2000


def _recalls(cm: np.ndarray) -> np.ndarray:
    """Balanced accuracy of a stack of confusion matrices (B, K, K): the mean recall of the classes present."""
    tp, true = np.einsum("bii->bi", cm), cm.sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(true > 0, tp / true, np.nan), 1)


def _boot_cms(y: np.ndarray, pred: np.ndarray, k: int, draw: np.ndarray) -> np.ndarray:
    b = draw.shape[0]
    cells = (np.arange(b)[:, None] * k * k + y[draw] * k + pred[draw]).ravel()
    return np.bincount(cells, minlength=b * k * k).reshape(b, k, k).astype(float)


def paired_difference(y: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, *, seed: int = 0) -> dict[str, Any]:
    """Balanced accuracy of predictions ``a`` minus that of ``b`` on the same items, with a paired
    bootstrap 95% interval (the same resampled items for both).

    Example:
        >>> y = np.array([0, 1] * 20); a = y.copy(); b = y.copy(); b[:10] = 1 - b[:10]
        >>> d = paired_difference(y, a, b, 2)
        >>> round(d["difference"], 2), d["ci95"][0] > 0
        (0.25, True)
    """
    draw = np.random.default_rng(seed).integers(0, len(y), size=(N_BOOT, len(y)))
    diff = _recalls(_boot_cms(y, a, k, draw)) - _recalls(_boot_cms(y, b, k, draw))
    one = _recalls(_boot_cms(y, a, k, np.arange(len(y))[None])) - _recalls(_boot_cms(y, b, k, np.arange(len(y))[None]))
    return {"difference": float(one[0]), "ci95": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]}


def paired_mean_difference(a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """Mean of per-item scores ``a`` minus ``b`` (e.g. Dice per image), paired bootstrap 95% interval."""
    d = np.asarray(a, float) - np.asarray(b, float)
    draw = np.random.default_rng(seed).integers(0, len(d), size=(N_BOOT, len(d)))
    means = d[draw].mean(1)
    return {"difference": float(d.mean()),
            "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]}


def _ordered(results: list[dict]) -> list[dict]:
    return sorted(results, key=lambda r: r["part"])


def pool(results: list[dict], task: str, classes: list[str]) -> dict[str, Any]:
    """One approach's parts pooled: the figure with its interval, and the arrays it comes from."""
    from optileuk.metrics import classification_metrics, mean_ci

    parts = _ordered(results)
    index = np.concatenate([r["index"] for r in parts]).astype(int)
    order = np.argsort(index, kind="stable")
    out: dict[str, Any] = {"index": index[order]}
    if task == "classification":
        y = np.concatenate([r["y_true"] for r in parts]).astype(int)[order]
        pred = np.concatenate([r["y_pred"] for r in parts]).astype(int)[order]
        scores = np.concatenate([np.asarray(r["scores"], float) for r in parts])[order]
        out.update(y_true=y, y_pred=pred, scores=scores,
                   metrics=classification_metrics(y, pred, scores, classes))
    else:
        per = {m: np.concatenate([r["per_image"][m] for r in parts])[order] for m in ("dice", "iou", "ssim")}
        out["per_image"] = per
        out["metrics"] = {**{m: float(v.mean()) for m, v in per.items()},
                          **{f"{m}_ci95": mean_ci(v) for m, v in per.items()}, "n_test": int(len(order))}
    return out


def primary(task: str) -> str:
    return "balanced_accuracy" if task == "classification" else "dice"


def part_rows(results: list[dict], task: str) -> list[dict[str, Any]]:
    """Per part: its size, the held-out score, the search's own best figure, optimism, the config chosen."""
    key = primary(task)
    rows = []
    for r in _ordered(results):
        inner = (r.get("inner") or {}).get("metrics", {}).get(key)
        held = r["heldout"].get(key)
        rows.append({"part": r["part"], "items": len(r["index"]), "heldout": held, "inner": inner,
                     "optimism": None if inner is None or held is None else float(inner - held),
                     "params": r["params"], "seconds": r.get("seconds"),
                     "trials": (r.get("inner") or {}).get("trials")})
    return rows


def stability(results: list[dict]) -> dict[str, Any]:
    """How each parameter was chosen across the parts: the values (categorical) or the range (numbers)."""
    params = [{"(the defaults)": "chosen"} if ((r.get("inner") or {}).get("selection") or {}).get("defaults")
              else r["params"] for r in _ordered(results)]
    out: dict[str, Any] = {}
    for name in sorted({k for p in params for k in p}):
        vals = [p.get(name) for p in params]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v is not None) and \
                len({v for v in vals if v is not None}) > 3:
            nums = [float(v) for v in vals if v is not None]
            out[name] = {"min": min(nums), "max": max(nums), "parts": len(nums)}
        else:
            counts: dict[str, int] = {}
            for v in vals:
                shown = f"{v:.4g}" if isinstance(v, float) else str(v)
                counts[shown] = counts.get(shown, 0) + 1
            out[name] = {"chosen": counts}
    return out


def compare(pooled: dict[str, dict], task: str, n_classes: int) -> list[dict[str, Any]]:
    """Paired differences of every pair of approaches on the same items, best pooled figure first."""
    key = primary(task)
    ranked = sorted(pooled, key=lambda a: -pooled[a]["metrics"][key])
    out = []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            pa, pb = pooled[a], pooled[b]
            if task == "classification":
                d = paired_difference(pa["y_true"], pa["y_pred"], pb["y_pred"], n_classes)
            else:
                d = paired_mean_difference(pa["per_image"]["dice"], pb["per_image"]["dice"])
            out.append({"a": a, "b": b, "metric": key, **d, "resolved": d["ci95"][0] > 0 or d["ci95"][1] < 0})
    return out


def verdict(pooled: dict[str, dict], pairs: list[dict], task: str) -> str:
    """The answer to "which approach for this data", in one sentence."""
    key = primary(task)
    ranked = sorted(pooled, key=lambda a: -pooled[a]["metrics"][key])
    best = ranked[0]
    if len(ranked) == 1:
        return f"{best}: {key.replace('_', ' ')} {pooled[best]['metrics'][key]:.3f} (one approach: nothing to compare)"
    beaten = [p["b"] for p in pairs if p["a"] == best and p["ci95"][0] > 0]
    tied = [p["b"] for p in pairs if p["a"] == best and p["ci95"][0] <= 0]
    text = f"{best} has the highest pooled held-out {key.replace('_', ' ')} ({pooled[best]['metrics'][key]:.3f})"
    if beaten:
        text += f"; it is better than {', '.join(beaten)} (paired 95% intervals above 0)"
    if tied:
        text += f"; against {', '.join(tied)} the paired interval includes 0: these data do not tell them apart"
    return text
