"""KroneckerLinear against nn.Linear, and the DKNN head at low rank against a dense head.

Part 1: forward+backward time (batch 64, CPU, median of repeats) and parameters of a layer
4096 -> 1024 at ranks 1, 2, 4, 8, 16 against the dense layer.
Part 2: DKNN on the embedded synthetic crops (4 classes, 300 per class, 32 px, 20 epochs, one
colour-jittered copy of each training image),
head ranks (1,1) and (2,1) against the dense head (0,0): balanced accuracy on the grouped
validation split, mean over seeds, and head parameters.

Run: python benchmarks/kronecker.py [--seeds 3]
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


def dknn_accuracy(seeds: list[int]) -> None:
    print("\n| DKNN head (rank1, rank2) | head parameters | balanced accuracy (validation), mean over seeds | per seed |")
    print("|---|---|---|---|")
    for ranks in [(0, 0), (1, 1), (2, 1), (2, 2)]:
        accs, params = [], None
        for seed in seeds:
            obj = make("dknn", {}, seed=seed)
            s = obj.evaluate({"rank1": ranks[0], "rank2": ranks[1], "epochs": 20})
            accs.append(s.attrs["balanced_accuracy"])
            params = s.attrs["head_params"]
        print(f"| {ranks} | {params:,} | {statistics.mean(accs):.4f} | {', '.join(f'{a:.3f}' for a in accs)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    layer_timing()
    dknn_accuracy(list(range(args.seeds)))


if __name__ == "__main__":
    main()
