"""Real nucleus segmentation: classical pipeline and unet_plr, untuned against tuned, on held-out real cells.

Data: ../shared/data/wbc_seg_cellavision (100 real 300x300 white-blood-cell images, expert masks;
GPL-3, read in place). One split for every method (seed 0): 20 test images held out, the other 80
form the search part (60 training + 20 validation for the U-Net; all 80 scored for the classical
pipeline). Every method is scored once on the same 20 test images, on each image's own pixels:
mean nucleus Dice with a bootstrap 95% interval over test images, and the paired difference
against the tuned U-Net with its own interval.

Methods, each timed on this machine (2 CPU cores here):
1. untuned k-means in CIE Lab (k=3, darkest cluster = nucleus), the classical default;
2. the classical pipeline (search_spaces/segmentation.yaml + stain normalisation) tuned by TPE
   and by PSO, ``--classical-trials`` each, scored by Dice on the search part;
3. unet_plr with its defaults (no search), trained as ``optileuk train`` trains;
4. unet_plr tuned by the shipped ``studies/real_unet_tpe.yaml`` (``--unet-trials``), then its best
   config trained and scored as ``optileuk train`` does;
5. with ``--unet-pso``: the same U-Net space tuned by PSO (population 4).

Run: python benchmarks/real_segmentation.py [--classical-trials 60] [--unet-trials 14] [--unet-pso]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import bootstrap

from optileuk.config import load_study, study_from_dict
from optileuk.objectives import make
from optileuk.objectives._segmentation import BASELINE
from optileuk.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wbc_seg_cellavision"
SPLIT = {"test_size": 0.2, "folds": 1, "val_size": 0.25}


def per_image_dice(final) -> np.ndarray:
    out = []
    for i in range(len(final.predictions["index"])):
        p, t = final.predictions[f"pred_{i}"], final.predictions[f"truth_{i}"]
        total = p.sum() + t.sum()
        out.append(1.0 if total == 0 else 2 * np.logical_and(p, t).sum() / total)
    return np.array(out)


def ci(values: np.ndarray) -> tuple[float, float]:
    res = bootstrap((values,), np.mean, n_resamples=5000, confidence_level=0.95, method="percentile", random_state=0)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def run_study(data: dict, storage: str) -> tuple[dict, float, float]:
    data = {**data, "storage": storage}
    study = study_from_dict(data, ROOT / "studies" / "benchmark.yaml")
    start = time.perf_counter()
    summary = Runner(study).run()
    return summary.best_params, summary.best_value, time.perf_counter() - start


def tuned(rows: list, label: str, data: dict, storage: str, objective: str, config) -> dict:
    """Run one study, train its best config as ``optileuk train`` does, add the row; the best params."""
    best, value, secs = run_study(data, storage)
    t = time.perf_counter()
    final = make(objective, config, seed=0).train_final(best)
    rows.append((label, secs, time.perf_counter() - t, per_image_dice(final), value))
    print(f"{label} done in {secs:.0f} s: test Dice {rows[-1][3].mean():.4f}; best {best}", flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classical-trials", type=int, default=60)
    ap.add_argument("--unet-trials", type=int, default=None, help="default: the shipped study's budget")
    ap.add_argument("--unet-pso", action="store_true", help="also tune the U-Net with PSO (another ~20 min)")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found (this benchmark reads the real wbc_seg_cellavision set)")
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    tmp = Path(tempfile.mkdtemp(prefix="optileuk-realseg-"))
    storage = f"sqlite:///{tmp / 'bench.db'}"
    rows = []  # (method, search seconds, final seconds, per-image test dice, search value)

    dataset = {"type": "pairs", "path": str(DATA)}
    seg_cfg = {"dataset": dataset, "split": SPLIT, "target": "nucleus", "score": "dice", "max_images": 80}
    seg = make("segmentation", seg_cfg, seed=0)
    t = time.perf_counter()
    final = seg.train_final(BASELINE)
    rows.append(("k-means Lab, untuned (classical default)", 0.0, time.perf_counter() - t, per_image_dice(final),
                 1 - seg.evaluate(BASELINE).attrs["dice"]))
    print(f"untuned k-means done: test Dice {rows[-1][3].mean():.4f}", flush=True)

    space = yaml.safe_load((ROOT / "search_spaces" / "segmentation.yaml").read_text())
    space["parameters"]["stain"] = {"type": "categorical", "choices": ["none", "reinhard", "macenko"]}
    for opt in ({"name": "tpe", "population": 4, "n_startup_trials": 12}, {"name": "pso", "population": 10}):
        data = {"name": f"realseg-classical-{opt['name']}", "seed": 0, "objective": {"type": "segmentation", **seg_cfg},
                "search_space": space, "optimizer": opt, "budget": {"trials": args.classical_trials}}
        tuned(rows, f"classical pipeline, {opt['name'].upper()} ({args.classical_trials} trials)", data, storage,
              "segmentation", seg_cfg)

    shipped = load_study(ROOT / "studies" / "real_unet_tpe.yaml")
    unet_cfg = shipped.objective_config
    unet = make("unet_plr", unet_cfg, seed=0)
    t = time.perf_counter()
    final = unet.train_final({})
    rows.append((f"unet_plr defaults, untuned ({unet_cfg.image_size} px)", 0.0, time.perf_counter() - t,
                 per_image_dice(final), 1 - final.facts["val_dice"]))
    print(f"untuned U-Net done: test Dice {rows[-1][3].mean():.4f}", flush=True)

    unet_data = yaml.safe_load((ROOT / "studies" / "real_unet_tpe.yaml").read_text())
    unet_data["objective"]["dataset"]["path"] = str(DATA)
    if args.unet_trials:
        unet_data["budget"] = {"trials": args.unet_trials}
    runs = [("tpe", unet_data["optimizer"])] + ([("pso", {"name": "pso", "population": 4})] if args.unet_pso else [])
    for name, opt in runs:
        data = {**unet_data, "name": f"realseg-unet-{name}", "optimizer": opt}
        tuned(rows, f"unet_plr, {name.upper()} ({unet_data['budget']['trials']} trials)", data, storage,
              "unet_plr", unet_cfg)

    ref = rows[-len(runs)][3]  # the TPE-tuned U-Net, paired against every method on the same test images
    print(f"\nwbc_seg_cellavision, nucleus, {len(ref)} held-out test images (same split for all), "
          f"{os.cpu_count()} CPU cores")
    print(f"{'method':52s} {'search Dice':>11s} {'test Dice [95% CI]':>26s} {'tuned U-Net minus this [95% CI]':>34s} "
          f"{'search s':>9s} {'final s':>8s}")
    for name, search_s, final_s, dice, value in rows:
        lo, hi = ci(dice)
        diff = ref - dice
        dl, dh = ci(diff) if np.ptp(diff) > 0 else (0.0, 0.0)
        print(f"{name:52s} {1 - value:11.4f} {dice.mean():8.4f} [{lo:.4f}, {hi:.4f}]     "
              f"{diff.mean():+8.4f} [{dl:+.4f}, {dh:+.4f}]      {search_s:9.0f} {final_s:8.0f}")


if __name__ == "__main__":
    main()
