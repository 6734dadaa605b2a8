"""Shared torch plumbing for the trained objectives: devices, tensors, seeded training loops."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import optuna
import torch
from torch import nn

from optileuk.data import to_square
from optileuk.errors import ConfigError, DataError, Problem
from optileuk.models import KroneckerLinear


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when present, else ``cpu``; ``cuda:N`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError([Problem("", "objective.device", "asks for CUDA but no CUDA device is available", name)])
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError([Problem("", "objective.device", f"must be below cuda:{torch.cuda.device_count()}", name)])
    return dev


def image_tensor(images: list[np.ndarray], size: int, resize: str = "pad") -> torch.Tensor:
    """(N, 3, size, size) float32 in [0, 1]; images of any size and shape placed by ``resize``
    (:mod:`optileuk.data._geometry`: pad, crop or stretch)."""
    out = torch.empty(len(images), 3, size, size)
    for i, im in enumerate(images):
        t = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)).permute(2, 0, 1).div_(255)
        out[i] = to_square(t, size, resize)
    return out.clamp_(0, 1)


def target_of(mask: np.ndarray, target: str = "nucleus") -> np.ndarray:
    """Boolean target of a 0/1/2 mask: nucleus = label 2, cell = label >= 1."""
    return (mask == 2) if target == "nucleus" else (mask >= 1)


def mask_tensor(masks: list[np.ndarray], size: int, target: str = "nucleus", resize: str = "pad") -> torch.Tensor:
    """(N, 1, size, size) float32 binary target, placed as :func:`image_tensor` places its image."""
    out = torch.empty(len(masks), 1, size, size)
    for i, m in enumerate(masks):
        t = torch.from_numpy(target_of(m, target).astype(np.float32))[None]
        out[i] = to_square(t, size, resize, mask=True)
    return out


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards
    (module initialisation and dropout draw from the global RNG)."""
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        yield


def adam(model: nn.Module, lr: float, weight_decay: float, part: nn.Module | None = None,
         part_scale: float = 1.0, factor_scale: float = 1.0) -> torch.optim.Adam:
    """Adam with weight decay on weights only: no decay on PReLU slopes, biases or norms. ``part``
    (a pretrained trunk) learns at ``part_scale`` times ``lr``; the factors of Kronecker layers
    outside it at ``factor_scale`` times ``lr`` (Adam moves every weight by about the rate per step,
    and a factor's entries are several times a dense weight's, so the product moves less)."""
    inside = {id(p) for p in part.parameters()} if part is not None else set()
    rates = {"model": lr, "part": lr * part_scale, "factor": lr * factor_scale}
    groups: dict[tuple[str, bool], list] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            no_decay = isinstance(module, (nn.PReLU, nn.BatchNorm2d)) or name == "bias"
            kind = "part" if id(p) in inside else "factor" if isinstance(module, KroneckerLinear) and name in ("a", "b") \
                else "model"
            groups.setdefault((kind, no_decay), []).append(p)
    return torch.optim.Adam([{"params": ps, "weight_decay": 0.0 if no_decay else weight_decay, "lr": rates[kind]}
                             for (kind, no_decay), ps in groups.items()], lr=lr)


def _freeze(module: nn.Module, frozen: bool) -> None:
    """A frozen module takes no gradient and keeps its batch-norm statistics (eval mode)."""
    for p in module.parameters():
        p.requires_grad_(not frozen)
    if frozen:
        module.eval()


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss_fn: Callable, epochs: int, batch_size: int,
        lr: float, weight_decay: float, device: torch.device, seed: int,
        on_epoch: Callable[[int], float | None] | None = None, trial: optuna.trial.BaseTrial | None = None,
        augment: Callable | None = None, patience: int | None = None, one_cycle: bool = False,
        pretrained: tuple[nn.Module, int, float] | None = None, factor_scale: float = 1.0) -> int:
    """Seeded mini-batch training. ``on_epoch(epoch)`` returns a validation error to report.

    With a ``trial``, the error is reported after each epoch and Optuna's pruner is asked;
    a pruned trial raises :class:`optuna.TrialPruned`. ``augment(x, y, generator)`` transforms
    each training batch (training only). With ``patience``, training stops when the validation
    error has not improved for that many epochs and the model keeps its best epoch's weights
    (early stopping; with ``one_cycle``, the one-cycle learning-rate schedule over ``epochs``,
    epochs without improvement count from mid-training, after the rate's peak).
    ``pretrained = (module, frozen_epochs, lr_scale)``: a pretrained part (a trunk) frozen for the
    first ``frozen_epochs`` (no gradient, batch-norm statistics kept), then fine-tuned at
    ``lr_scale`` times the rate. Kronecker factors learn at ``factor_scale`` times the rate (:func:`adam`).
    Returns the number of epochs trained.
    """
    with seeded(seed):
        try:
            return _fit(model, x, y, loss_fn=loss_fn, epochs=epochs, batch_size=batch_size, lr=lr,
                        weight_decay=weight_decay, device=device, seed=seed, on_epoch=on_epoch, trial=trial,
                        augment=augment, patience=patience, one_cycle=one_cycle, pretrained=pretrained,
                        factor_scale=factor_scale)
        finally:
            if pretrained is not None:
                for p in pretrained[0].parameters():
                    p.requires_grad_(True)


def _fit(model, x, y, *, loss_fn, epochs, batch_size, lr, weight_decay, device, seed, on_epoch, trial,
         augment=None, patience=None, one_cycle=False, pretrained=None, factor_scale=1.0) -> int:
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    part, frozen_for, scale = pretrained if pretrained is not None else (None, 0, 1.0)
    opt = adam(model, lr, weight_decay, part, scale, factor_scale)
    n = len(x)
    steps = sum(1 for s in range(0, n, batch_size) if not (min(batch_size, n - s) < 2 <= n))
    max_lr = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(1, epochs * steps)) if one_cycle else None
    best, best_state, since = float("inf"), None, 0
    for epoch in range(epochs):
        model.train()
        if part is not None:
            _freeze(part, epoch < frozen_for)
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and n >= 2:  # batch norm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            xb, yb = x[idx].to(device), y[idx].to(device)
            if augment is not None:
                xb, yb = augment(xb, yb, gen)
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}")
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        if on_epoch is not None:
            err = on_epoch(epoch)
            if trial is not None and err is not None:
                trial.report(float(err), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")
            if patience is not None and err is not None:
                if err < best:
                    best, since = float(err), 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                elif not one_cycle or epoch >= epochs // 2:  # a one-cycle rate is high before mid-training
                    since += 1
                    if since >= patience:
                        model.load_state_dict(best_state)
                        return epoch + 1
    if best_state is not None:
        model.load_state_dict(best_state)
    return epochs


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def predict_proba(model: nn.Module, x: torch.Tensor, device: torch.device, *, tta: bool = False) -> torch.Tensor:
    """Softmax class probabilities (:func:`predict`); with ``tta``, averaged over the 8 flips and
    right-angle rotations of each image (test-time augmentation: a cell has no up or left)."""
    views = [torch.rot90(v, k, (2, 3)) for v in (x, x.flip(3)) for k in range(4)] if tta else [x]
    return torch.stack([torch.softmax(predict(model, v, device), 1) for v in views]).mean(0)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the ``prefix``-named tensors of a bundle into ``module`` (every one of its weights must be
    there, with its shape: a bundle that does not fit the architecture it describes is refused)."""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(f"the model's weights ({prefix}*) do not fit its architecture: "
                        f"{' '.join(line.strip() for line in first[:3])[:300]}") from None
