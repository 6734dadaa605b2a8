"""Training throughput of the DKNN on this machine's CPU: images per second of a training step
(forward, backward, Adam) at input sides 32, 64 and 128, as it trains now (float32, contiguous)
against channels-last memory and bfloat16 autocast, side by side in one run -- the measurements
issue 29 asks for before a faster trunk is chosen; then the trunk architectures (stages, residual
depth) at 64 and 128 px.

On a GPU (``--device cuda``) the same tables are measured with CUDA's autocast (bfloat16) and
channels-last, at the objective's batch of 64 and at a larger batch (``--batch``).

Run: python benchmarks/trunk_speed.py [--threads 2] [--batch 64] [--seconds 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from optileuk.models import DKNN


def rate(size: int, batch: int, seconds: float, channels_last: bool, bf16: bool, widths=(16, 32, 64),
         depth: int = 0, device: str = "cpu") -> float:
    torch.manual_seed(0)
    net = DKNN(8, image_size=size, widths=widths, ranks=(2, 1), hidden=256, depth=depth).to(device)
    x, y = torch.rand(batch, 3, size, size, device=device), torch.randint(0, 8, (batch,), device=device)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(3):  # warm-up (and cuDNN's choice of kernels)
        step()
    sync()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(5 if n else 1):
            step()
            n += batch
        sync()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}; "
              f"bf16 supported by this CPU: {torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported') and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
        tables([args.batch], args)
    else:  # on a GPU also at the objectives' batch of 64, where launches rather than arithmetic bound a step
        torch.backends.cudnn.benchmark = True
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(args.device)}, batch {args.batch}")
        tables(sorted({64, args.batch}), args)


def tables(batches, args) -> None:
    """Memory format and precision at sides 32-128 for each batch; then the trunk architectures."""
    for batch in batches:
        print(f"\nbatch {batch}\n| side | float32 (now) | channels-last | bfloat16 autocast | both |\n|---|---|---|---|---|")
        for size in (32, 64, 128):
            base = rate(size, batch, args.seconds, False, False, device=args.device)
            cells = [f"{base:.0f} img/s"]
            for cl, bf in ((True, False), (False, True), (True, True)):
                r = rate(size, batch, args.seconds, cl, bf, device=args.device)
                cells.append(f"{r:.0f} ({r / base:.2f}x)")
            print(f"| {size} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nbatch {args.batch}, float32\n| trunk | 64 px | 128 px |\n|---|---|---|")
    for label, widths, depth in (("3 stages 16-32-64 (main job)", (16, 32, 64), 0),
                                 ("4 stages 16-32-64-128 (pbc_trunk.yaml)", (16, 32, 64, 128), 0),
                                 ("3 stages, residual depth 1", (16, 32, 64), 1),
                                 ("4 stages, residual depth 1", (16, 32, 64, 128), 1)):
        cells = [f"{rate(s, args.batch, args.seconds, False, False, widths, depth, args.device):.0f} img/s"
                 for s in (64, 128)]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
