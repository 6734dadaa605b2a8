"""Applying a bundle to batches of inputs: in this process, or on Dask workers that each load the
bundle once and take batches (the driver writes every output)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from optileuk.data import ChannelsError
from optileuk.errors import DataError
from optileuk.predict._inputs import Item


@dataclass
class Result:
    """What became of one input image."""

    index: int
    ok: bool = True
    reason: str = ""  # why it was skipped
    label: int | None = None
    scores: np.ndarray | None = None
    mask: np.ndarray | None = None  # uint8 0/1/2 on the image's own pixels
    measurements: np.ndarray | None = None
    overlay: np.ndarray | None = None  # RGB uint8: the image with the mask outlined
    thumb: np.ndarray | None = None  # RGB uint8, at most 128 px (the gallery)


THUMB = 128


def thumbnail(image: np.ndarray, side: int = THUMB) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(image)
    im.thumbnail((side, side))
    return np.asarray(im)


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the cell (cyan) and the nucleus (magenta) outlined (their inner boundary pixels)."""
    out = image.copy()
    for level, colour in ((1, (0, 220, 255)), (2, (255, 0, 200))):
        region = mask >= level
        inner = np.zeros_like(region)  # erosion by the 4-neighbour cross; outside the image is background
        inner[1:-1, 1:-1] = (region[1:-1, 1:-1] & region[:-2, 1:-1] & region[2:, 1:-1]
                             & region[1:-1, :-2] & region[1:-1, 2:])
        out[region & ~inner] = colour
    return out


@dataclass
class Read:
    """A batch after reading and preparation: what the model runs on, and what did not read."""

    start: int
    prepared: Any
    done: list[int]  # positions in the batch that were read
    images: list[np.ndarray]  # the images as read (for overlays and thumbnails)
    skipped: list[Result]


def read_batch(model, items: Sequence[Item], start: int) -> Read:
    """Read ``items`` (numbered from ``start``) and prepare them for the model (stain, geometry); an
    image that cannot be read is skipped with the reason, one whose channels cannot be made RGB stops."""
    images, done, skipped = [], [], []
    for k, it in enumerate(items):
        try:
            images.append(it.read())
            done.append(k)
        except ChannelsError:
            raise
        except DataError as exc:  # unreadable, corrupt: skipped, the others go on
            skipped.append(Result(start + k, ok=False, reason=str(exc)))
    return Read(start, model.prepare(images) if images else None, done, images, skipped)


def run_batch(model, read: Read, *, images_out: bool = True, thumbs: bool = False) -> list[Result]:
    """The model on one prepared batch; overlays and thumbnails made from the images as read."""
    results = list(read.skipped)
    if read.images:
        pred = model.run(read.prepared)
        for j, k in enumerate(read.done):
            r = Result(read.start + k)
            if pred.labels is not None:
                r.label, r.scores = int(pred.labels[j]), np.asarray(pred.scores[j])
            if pred.masks is not None:
                r.mask = pred.masks[j]
                if images_out:
                    r.overlay = overlay(read.images[j], r.mask)
            if pred.measurements is not None:
                r.measurements = np.asarray(pred.measurements[j])
            if thumbs:
                r.thumb = thumbnail(r.overlay if r.overlay is not None else read.images[j])
            results.append(r)
    return sorted(results, key=lambda r: r.index)


def apply_batch(model, items: Sequence[Item], start: int, *, images_out: bool = True,
                thumbs: bool = False) -> list[Result]:
    """Read, prepare and run one batch."""
    return run_batch(model, read_batch(model, items, start), images_out=images_out, thumbs=thumbs)


def apply_inline(model, items: Sequence[Item], *, batch_size: int, on_done: Callable[[list[Result]], None],
                 images_out: bool = True, thumbs: bool = False, readers: int = 2) -> None:
    """Batches in this process, as a pipeline: ``readers`` threads read and prepare the next batches
    (decoding and resizing release the GIL) and one writes the previous results while the model runs
    on this one."""
    from concurrent.futures import ThreadPoolExecutor

    starts = list(range(0, len(items), batch_size))
    with ThreadPoolExecutor(readers) as reader, ThreadPoolExecutor(1) as writer:
        pending = [reader.submit(read_batch, model, items[s:s + batch_size], s) for s in starts[:readers]]
        writes = []
        for n in range(len(starts)):
            read = pending.pop(0).result()
            if n + readers < len(starts):
                s = starts[n + readers]
                pending.append(reader.submit(read_batch, model, items[s:s + batch_size], s))
            writes.append(writer.submit(on_done, run_batch(model, read, images_out=images_out, thumbs=thumbs)))
            while writes and writes[0].done():
                writes.pop(0).result()  # a failed write stops the run with its error
        for w in writes:
            w.result()


# ---- Dask ----------------------------------------------------------------------------------------------
def _host_class():
    from distributed import WorkerPlugin

    class ModelHost(WorkerPlugin):
        """Worker plugin: the bundle loaded once per worker and kept for every batch it takes."""

        def __init__(self, run_dir: str, device: str):
            self.run_dir, self.device = run_dir, device
            self._model, self._lock = None, threading.Lock()

        def __getstate__(self) -> dict[str, Any]:
            return {"run_dir": self.run_dir, "device": self.device}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__init__(state["run_dir"], state["device"])

        def setup(self, worker) -> None:  # loaded while the cluster starts, not with the first batch
            self.model()

        def model(self):
            from optileuk.bundle import load
            from optileuk.runner.cluster import DEVICE_ENV

            with self._lock:
                if self._model is None:
                    device = os.environ.get(DEVICE_ENV) if self.device == "auto" else self.device
                    self._model = load(self.run_dir, device=device or "auto")
                return self._model

    return ModelHost


def predict_task(host: str, items: list[Item], start: int, images_out: bool, thumbs: bool) -> list[Result]:
    """The Dask task: one batch with the worker's loaded bundle."""
    from distributed import get_worker

    plugin = get_worker().plugins.get(host)
    if plugin is None:
        raise RuntimeError(f"worker has no optileuk plugin '{host}' (is optileuk installed on it?)")
    return apply_batch(plugin.model(), items, start, images_out=images_out, thumbs=thumbs)


def apply_dask(run_dir: str, device: str, items: Sequence[Item], *, batch_size: int, workers: int | None,
               scheduler: str | None, on_done: Callable[[list[Result]], None], images_out: bool = True,
               thumbs: bool = False, on_start: Callable[[str], None] | None = None) -> None:
    """Batches as Dask tasks on ``workers`` local single-threaded processes, or on the cluster at
    ``scheduler``; each worker loads the bundle once (a worker plugin)."""
    import hashlib

    from optileuk.runner.cluster import cpu_cluster, register, results

    with cpu_cluster(workers, scheduler, on_start) as client:
        name = "optileuk-model-" + hashlib.sha256(f"{run_dir}:{device}".encode()).hexdigest()[:12]
        register(client, _host_class()(run_dir, device), name)
        futures = [client.submit(predict_task, name, list(items[s:s + batch_size]), s, images_out, thumbs, pure=False)
                   for s in range(0, len(items), batch_size)]
        for _, batch in results(client, futures, lambda fut: "a prediction batch"):
            on_done(batch)
