"""Synthetic generation speed and loader throughput, cold (decode/generate) and cached.

* synthetic: 1,000 crops of 64 px (4 classes x 250), single process;
* folders: the real bccd_cells crops (../shared/data/bccd_cells) when present, else 1,000 PNGs
  this script writes to a temporary folder.

Each cold run uses a fresh cache folder; the cached run reads what the cold run stored.
Run: python benchmarks/data_throughput.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from optileuk.data import FoldersData, SyntheticData, load_dataset

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT.parent / "shared" / "data" / "bccd_cells"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OPTILEUK_CACHE"] = str(Path(tmp) / "cache")
        cfg = SyntheticData(type="synthetic", n_per_class=250, size=64)
        ds, cold = timed(lambda: load_dataset(cfg))
        _, warm = timed(lambda: load_dataset(cfg))
        rows.append(("synthetic crops 64 px", len(ds), cold, warm))
        cfg = SyntheticData(type="synthetic", kind="fields", n_per_class=25, size=256)
        ds, cold = timed(lambda: load_dataset(cfg))
        _, warm = timed(lambda: load_dataset(cfg))
        rows.append(("synthetic fields 256 px", len(ds), cold, warm))
        if BCCD.is_dir():
            path, what = BCCD, "folders: bccd_cells (JPEG)"
        else:
            path, what = Path(tmp) / "pngs", "folders: written PNGs"
            from PIL import Image

            for i in range(1000):
                (path / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path / f"c{i % 2}" / f"{i}.png")
        cfg = FoldersData(type="folders", path=str(path))
        ds, cold = timed(lambda: load_dataset(cfg))
        _, warm = timed(lambda: load_dataset(cfg))
        rows.append((what, len(ds), cold, warm))
    print(f"{'dataset':28s} {'images':>7s} {'cold s':>8s} {'cold img/s':>11s} {'cached s':>9s} {'cached img/s':>13s} {'speed-up':>9s}")
    for name, n, cold, warm in rows:
        print(f"{name:28s} {n:7d} {cold:8.2f} {n / cold:11.0f} {warm:9.3f} {n / warm:13.0f} {cold / warm:9.1f}")


if __name__ == "__main__":
    main()
