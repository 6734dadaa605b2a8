"""Real cell-type classification, assessed honestly: ``optileuk assess`` over the field's approaches.

Data (read in place, never copied):
* ``wbc``: the cell types of ../shared/data/wbc_seg_cellavision (labels.csv; basophils, 3 cells,
  dropped by ``min_per_class: 10``): 97 cells of 4 types;
* ``bccd``: ../shared/data/bccd_cells (1,431 crops, WBC / RBC / platelets, grouped by source image).

Approaches (one assessment per set: the same 5 outer parts for all, seed 0, as ``optileuk assess``
makes them; each tuned on the other parts only, trained on them, the part scored once; pooled):
1. ``real-handcrafted-tpe``: the shipped study (hand features + SVM; C, gamma, class weights and
   scaling tuned by TPE, 40 trials), and its ``-untuned`` reference (the handcrafted defaults);
2. ``real-dknn-tpe``: ``dknn`` (64 px, Kronecker head, on-device augmentation) with lr, ranks and
   epochs tuned by TPE (``--dknn-trials``), and its ``-untuned`` reference (the defaults);
3. ``real-fs-ga``: ``feature_selection`` by GA (300 trials; trunk per fold + hand features, KNN);
4. ``real-pipeline-pso`` (wbc only): the shipped study (U-Net per fold, PSO 300 trials over
   measurement groups and classifier) and its ``-untuned`` reference.

Printed: the pooled table (balanced accuracy, macro-F1 with bootstrap 95% intervals), the per-part
table, the paired differences and the verdict, as ``optileuk assess`` prints them; assess.json and
the storage are kept in the printed folder (``optileuk report --storage ...`` draws them).

Run: python benchmarks/real_classification.py [--sets wbc bccd] [--outer 5] [--trials-scale 1.0] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "wbc": {"type": "pairs", "path": str(SHARED / "wbc_seg_cellavision"), "min_per_class": 10},
    "bccd": {"type": "folders", "path": str(SHARED / "bccd_cells"), "group_pattern": r"(BloodImage_\d+)"},
}


def studies(folder: Path, set_name: str, scale: float, dknn_trials: int) -> list[Path]:
    ds = SETS[set_name]
    split = {"test_size": 0.2, "folds": 3}

    def write(name: str, data: dict) -> Path:
        data = {"name": f"{name}-{set_name}", "seed": 0, **data}
        path = folder / f"{name}-{set_name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    shipped = yaml.safe_load((ROOT / "studies" / "real_handcrafted_tpe.yaml").read_text())
    out = [write("real-handcrafted-tpe", {**{k: shipped[k] for k in ("search_space", "optimizer")},
                                          "objective": {**shipped["objective"], "dataset": ds},
                                          "budget": {"trials": max(1, int(40 * scale))}})]
    out.append(write("real-dknn-tpe", {
        "objective": {"type": "dknn", "dataset": ds, "split": {**split, "folds": 1, "val_size": 0.25}, "image_size": 64},
        "search_space": {"parameters": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                                        "rank1": {"type": "int", "low": 0, "high": 4},
                                        "epochs": {"type": "int", "low": 10, "high": 30}}},
        "optimizer": {"name": "tpe", "population": 1, "n_startup_trials": 3},
        "budget": {"trials": max(1, int(dknn_trials * scale))}}))
    out.append(write("real-fs-ga", {
        "objective": {"type": "feature_selection", "dataset": ds, "split": split},
        "search_space": {"parameters": {"features": {"type": "mask", "length": "auto"}}},
        "optimizer": {"name": "ga", "population": 20}, "budget": {"trials": max(1, int(300 * scale))}}))
    if set_name == "wbc":
        pipe = yaml.safe_load((ROOT / "studies" / "real_pipeline_pso.yaml").read_text())
        pipe["objective"]["dataset"] = ds
        pipe["budget"] = {"trials": max(1, int(pipe["budget"]["trials"] * scale))}
        out.append(write("real-pipeline-pso", {k: v for k, v in pipe.items() if k not in ("name", "seed")}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["wbc"], choices=list(SETS))
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--trials-scale", type=float, default=1.0, help="scale every search budget")
    ap.add_argument("--dknn-trials", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--folder", type=Path, default=None, help="keep storage and study files here (resumable)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from rich.console import Console

    from optileuk.assess import assess
    from optileuk.cli._assess import print_audit, print_summary

    folder = args.folder or Path(tempfile.mkdtemp(prefix="optileuk-real-classification-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OPTILEUK_CACHE", str(folder / "cache"))
    out = Console(width=140)
    for set_name in args.sets:
        paths = studies(folder, set_name, args.trials_scale, args.dknn_trials)
        untuned = [p for p in paths if "fs-ga" not in p.name]  # the mask has no default to assess
        refs = folder / f"references-{set_name}.yaml"
        refs.write_text(yaml.safe_dump({"references": [
            {"label": f"{p.stem}-untuned", "study": p.stem, "params": {}, "note": "the objective's defaults"}
            for p in untuned]}))
        summary = assess(paths, k=args.outer, storage=f"sqlite:///{folder}/{set_name}.db", name=f"real-{set_name}",
                         references=refs, workers=args.workers, output=folder / f"assess-{set_name}.json",
                         on_audit=lambda a: print_audit(a, out, out, f"{set_name}: shortcut audit"))
        print_summary(summary, out, folder / f"assess-{set_name}.json")
        out.print(f"{set_name}: {summary['seconds']:.0f} s in all; folder {folder}\n")


if __name__ == "__main__":
    main()
