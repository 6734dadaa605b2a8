"""KroneckerLinear against nn.Linear, and the DKNN head at low rank against a dense head.

Part 1: forward+backward time (batch 64, CPU, median of repeats) and parameters of a layer
4096 -> 1024 at ranks 1, 2, 4, 8, 16 against the dense layer.
Part 2: DKNN on the embedded synthetic crops (the ``dknn`` objective's defaults: 4 classes, 300
per class, 32 px, 20 epochs, on-device augmentation) with the one-cycle schedule (the default) and
a constant learning rate side by side, head ranks
(1,1), (2,1) and (2,2) against the dense head (0,0): balanced accuracy on the grouped validation
split, mean over seeds (each seed also draws its own split), and head parameters.

Run: python benchmarks/kronecker.py [--seeds 3] [--schedules onecycle constant] [--skip-layers]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from optileuk.models import KroneckerLinear
from optileuk.objectives import make


def layer_timing(repeats: int = 20) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4096)
    layers = [("dense nn.Linear", torch.nn.Linear(4096, 1024))] + [
        (f"Kronecker rank {r}", KroneckerLinear(4096, 1024, rank=r)) for r in (1, 2, 4, 8, 16)]
    base = None
    print("| layer 4096 -> 1024 | parameters | fwd+bwd ms (batch 64) | time vs dense |")
    print("|---|---|---|---|")
    for name, layer in layers:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            layer(x).sum().backward()
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        base = base or ms
        print(f"| {name} | {sum(p.numel() for p in layer.parameters()):,} | {ms:.2f} | {ms / base:.2f} |")


def dknn_accuracy(seeds: list[int], schedules: list[str]) -> None:
    print("\n| DKNN head (rank1, rank2) | head parameters | schedule | balanced accuracy (validation), mean over seeds "
          "| sd over seeds | per seed |")
    print("|---|---|---|---|---|---|")
    for ranks in [(0, 0), (1, 1), (2, 1), (2, 2)]:
        for schedule in schedules:
            accs, params = [], None
            for seed in seeds:
                obj = make("dknn", {}, seed=seed)
                s = obj.evaluate({"rank1": ranks[0], "rank2": ranks[1], "epochs": 20, "schedule": schedule})
                accs.append(s.attrs["balanced_accuracy"])
                params = s.attrs["head_params"]
            print(f"| {ranks} | {params:,} | {schedule} | {statistics.mean(accs):.4f} | {statistics.stdev(accs):.4f} | "
                  f"{', '.join(f'{a:.3f}' for a in accs)} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--schedules", nargs="+", default=["onecycle", "constant"], choices=["onecycle", "constant"])
    ap.add_argument("--skip-layers", action="store_true", help="part 2 only")
    args = ap.parse_args()
    if not args.skip_layers:
        layer_timing()
    dknn_accuracy(list(range(args.seeds)), args.schedules)


if __name__ == "__main__":
    main()
