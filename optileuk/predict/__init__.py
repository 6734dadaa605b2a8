"""``optileuk predict``: apply a trained bundle to new images.

Example:
    >>> summary = predict("runs/best", ["new_cells/"], "predictions/")  # doctest: +SKIP
    >>> summary.written  # doctest: +SKIP
    ['predictions.csv', 'metrics.json']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from optileuk.errors import ConfigError, Problem
from optileuk.predict._apply import apply_dask, apply_inline
from optileuk.predict._inputs import Item, check_inputs, collect, dataset_spec
from optileuk.predict._write import Writer, metrics


@dataclass
class PredictSummary:
    out: Path
    images: int
    predicted: int
    skipped: int
    seconds: float
    written: list[str] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    where: str = "this process"


def predict(run_dir: str | Path, inputs: Sequence[str | Path], out: str | Path, *, gallery: bool = False,
            overlays: bool = True, batch_size: int = 64, device: str = "auto", workers: int | None = None,
            scheduler: str | None = None, on_progress: Callable[[int, int], None] | None = None,
            on_start: Callable[[str], None] | None = None) -> PredictSummary:
    """Apply the bundle in ``run_dir`` to every image ``inputs`` name; write the results into ``out``.

    ``workers``/``scheduler``: batches on Dask workers (each loads the bundle once); otherwise in this
    process. ``overlays``: write each segmented image with its masks outlined. ``on_start(where)``
    once the bundle and the inputs are checked; ``on_progress(done, total)`` after every batch.
    """
    from optileuk.bundle import load

    check_inputs([str(i) for i in inputs])
    if batch_size < 1:
        raise ConfigError([Problem("", "--batch-size", "must be an integer >= 1", batch_size)])
    if workers is not None and scheduler:
        raise ConfigError([Problem("", "--workers", "starts a local cluster; --scheduler names another one "
                                   "(give one of them)", workers)])
    model = load(run_dir, device="cpu" if (workers or scheduler) else device)  # verified before anything is read
    model.batch_size = batch_size
    items = collect([str(i) for i in inputs], model.classes)
    writer = Writer(Path(out), model, items)
    where = ["this process"]

    def on_done(results) -> None:
        writer.add(results)
        if on_progress:
            on_progress(len(writer.results), len(items))

    def started(text: str) -> None:
        where[0] = text
        if on_start:
            on_start(text)

    start = time.perf_counter()
    if workers or scheduler:
        apply_dask(str(Path(run_dir).resolve()), device, items, batch_size=batch_size, workers=workers,
                   scheduler=scheduler, on_done=on_done, images_out=overlays, thumbs=gallery, on_start=started)
    else:
        started(where[0])
        apply_inline(model, items, batch_size=batch_size, on_done=on_done, images_out=overlays, thumbs=gallery)
    seconds = time.perf_counter() - start
    return _finish(writer, run_dir, gallery, seconds, where[0])


def _finish(writer: Writer, run_dir, gallery: bool, seconds: float, where: str) -> PredictSummary:
    """The tables, metrics.json against any truth, the gallery; what was written."""
    written = writer.tables()
    scores = metrics(writer)
    if scores is not None:
        written.append("metrics.json")
    if gallery:
        from optileuk.predict._gallery import write_gallery

        written.append(write_gallery(writer, scores, f"optileuk predict: {Path(run_dir).name}").name)
    written += [f"{d}/" for d in ("masks", "overlays") if (writer.out / d).is_dir()]
    n = len(writer.items)
    return PredictSummary(writer.out, n, n - len(writer.skipped), len(writer.skipped), seconds, written, scores, where)


__all__ = ["Item", "PredictSummary", "collect", "dataset_spec", "predict"]
