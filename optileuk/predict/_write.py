"""What ``optileuk predict`` writes: predictions.csv (and measurements.csv), masks and overlays on each
image's own pixels, skipped.csv, and metrics.json when the inputs carry ground truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from optileuk.predict._apply import Result
from optileuk.predict._inputs import Item

MASK_VALUES = np.array([0, 128, 255], np.uint8)  # background, cytoplasm (or a whole cell), nucleus


def save_image(path: Path, array: np.ndarray) -> None:
    """A PNG (lossless, fast compression) or, for ``.jpg``, a JPEG of quality 90 (overlays: to look at)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(array).save(path, quality=90)
    else:
        Image.fromarray(array).save(path, compress_level=1)


class Writer:
    """Collects results as they arrive (in any order) and writes each one's images at once; the tables
    and metrics at the end, in the inputs' order."""

    def __init__(self, out: Path, model, items: Sequence[Item]):
        self.out, self.model, self.items = out, model, items
        self.results: dict[int, Result] = {}
        self.pixels: dict[int, tuple[int, int]] = {}  # nucleus and cell pixels of each mask
        self.thumbs: dict[int, np.ndarray] = {}  # for the gallery
        out.mkdir(parents=True, exist_ok=True)

    def add(self, results: list[Result]) -> None:
        for r in results:
            it = self.items[r.index]
            if r.mask is not None:
                save_image(self.out / "masks" / f"{it.stem}.png", MASK_VALUES[r.mask])
                self.pixels[r.index] = (int((r.mask == 2).sum()), int((r.mask >= 1).sum()))
                if it.mask is None and it.mask_path is None:  # kept only to be scored against a truth mask
                    r.mask = None
            if r.overlay is not None:
                save_image(self.out / "overlays" / f"{it.stem}.jpg", r.overlay)
                r.overlay = None
            if r.thumb is not None:
                self.thumbs[r.index], r.thumb = r.thumb, None
            self.results[r.index] = r

    @property
    def ordered(self) -> list[Result]:
        return [self.results[i] for i in sorted(self.results)]

    @property
    def skipped(self) -> list[Result]:
        return [r for r in self.ordered if not r.ok]

    def tables(self) -> list[str]:
        """Write predictions.csv (measurements.csv, skipped.csv); the names of the files written."""
        done = [r for r in self.ordered if r.ok]
        model, classes = self.model, self.model.classes
        truth = any(self.items[r.index].truth is not None for r in done)
        head = ["file"]
        if model.task != "segmentation":
            head += ["predicted", "confidence"] + [f"{'p' if model.probabilities else 'score'}_{c}" for c in classes]
        if model.task != "classification":
            head += ["mask", "nucleus_pixels", "cell_pixels"]
        rows = []
        for r in done:
            it = self.items[r.index]
            row = [it.name]
            if model.task != "segmentation":
                row += [classes[r.label], f"{confidence(r.scores, model.probabilities):.6g}"]
                row += [f"{v:.6g}" for v in r.scores]
            if model.task != "classification":
                row += [f"masks/{it.stem}.png", *self.pixels[r.index]]
            rows.append(row + ([it.truth or ""] if truth else []))
        written = [_csv(self.out / "predictions.csv", head + (["truth"] if truth else []), rows)]
        if model.measurement_names:
            written.append(_csv(self.out / "measurements.csv", ["file", *model.measurement_names],
                                [[self.items[r.index].name, *(f"{v:.6g}" for v in r.measurements)] for r in done]))
        if self.skipped:
            written.append(_csv(self.out / "skipped.csv", ["file", "reason"],
                                [[self.items[r.index].name, r.reason] for r in self.skipped]))
        return written


def _csv(path: Path, head: list[str], rows: list[list[Any]]) -> str:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head)
        w.writerows(rows)
    return path.name


def confidence(scores: np.ndarray, probabilities: bool) -> float:
    """The top probability; for decision values (an SVM), the margin between the top two scores."""
    s = np.sort(np.asarray(scores, dtype=float))[::-1]
    if probabilities:
        return float(s[0])
    return float(s[0] - s[1]) if len(s) > 1 else float(s[0])


def metrics(writer: Writer) -> dict[str, Any] | None:
    """Scores against the truth the inputs carry (class folders, labels.csv, masks), as train writes them."""
    from optileuk.metrics import classification_metrics, segmentation_metrics

    model, items = writer.model, writer.items
    done = [r for r in writer.ordered if r.ok]
    out: dict[str, Any] = {}
    scored = [r for r in done if r.label is not None and items[r.index].truth is not None]
    if scored:
        known = [r for r in scored if items[r.index].truth in model.classes]
        unknown = sorted({items[r.index].truth for r in scored} - set(model.classes))
        if known:
            y = np.array([model.classes.index(items[r.index].truth) for r in known])
            pred = np.array([r.label for r in known])
            scores = np.stack([r.scores for r in known])
            out["classification"] = {**classification_metrics(y, pred, scores, model.classes),
                                     "scores": "probability" if model.probabilities else "decision function"}
        if unknown:
            out["unknown_classes"] = {"classes": unknown, "images": len(scored) - len(known),
                                      "note": "classes the model was not trained on: left out of the metrics"}
    with_masks = [r for r in done if r.mask is not None]
    if with_masks:
        target = model.spec.get("target", "nucleus")
        want = 2 if target == "nucleus" else 1
        preds, truths = [], []
        for r in with_masks:
            t = items[r.index].truth_mask()
            if t is None or t.shape != r.mask.shape:
                continue
            preds.append(r.mask >= want)
            truths.append(t >= want)
        if preds:
            out["segmentation"] = {**segmentation_metrics(preds, truths), "target": target,
                                   "resolution": "each image's own pixels"}
    if not out:
        return None
    out["split"] = "the images given to optileuk predict (their own ground truth)"
    out["skipped"] = len(writer.skipped)
    (writer.out / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
    return out
