"""Training-only augmentation of image batches on the training device (GPU when there is one).

Each sample of a batch gets its own draw: flips, 90-degree rotations, a zoom in or out by up to
``scale``, per-channel colour gain and offset (``colour_jitter``) and stain jitter in optical
density (``stain_jitter``). Targets (masks) follow the geometric steps, never the colour ones.
Validation and test images are never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn import functional as F

from optileuk.data import stain_jitter_od


def _draw(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


@dataclass(frozen=True)
class BatchAugment:
    """``augment(x, y, generator) -> (x, y)`` for (N, C, S, S) images and masks (or class labels)."""

    flips: bool = True
    rot90: bool = True
    scale: float = 0.0
    colour_jitter: float = 0.0
    stain_jitter: float = 0.0

    @property
    def active(self) -> bool:
        return self.flips or self.rot90 or self.scale > 0 or self.colour_jitter > 0 or self.stain_jitter > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev = x.shape[0], x.device
        spatial = y.dim() == 4  # masks follow the geometry; class labels do not change
        if self.flips:
            for dim in (2, 3):
                pick = (_draw(gen, n) < 0.5).to(dev)
                x = torch.where(pick[:, None, None, None], x.flip(dim), x)
                if spatial:
                    y = torch.where(pick[:, None, None, None], y.flip(dim), y)
        if self.rot90 and x.shape[-1] == x.shape[-2]:
            k = (_draw(gen, n) * 4).long().clamp_(max=3).to(dev)
            xs, ys = x.clone(), y.clone() if spatial else y
            for r in (1, 2, 3):
                sel = k == r
                if sel.any():
                    xs[sel] = torch.rot90(x[sel], r, (2, 3))
                    if spatial:
                        ys[sel] = torch.rot90(y[sel], r, (2, 3))
            x, y = xs, ys
        if self.scale > 0:
            z = (1 + (_draw(gen, n) * 2 - 1) * self.scale).to(dev)  # > 1 zooms out
            theta = torch.zeros(n, 2, 3, device=dev)
            theta[:, 0, 0] = z
            theta[:, 1, 1] = z
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
            if spatial:
                y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        if self.colour_jitter > 0:
            gain = 1 + (_draw(gen, n, x.shape[1], 1, 1) * 2 - 1).to(dev) * self.colour_jitter
            offset = (_draw(gen, n, x.shape[1], 1, 1) * 2 - 1).to(dev) * self.colour_jitter / 2
            x = (x * gain + offset).clamp(0, 1)
        if self.stain_jitter > 0:
            x = stain_jitter_od(x, self.stain_jitter, gen)
        return x, y


class TrainAugment(BaseModel):
    """``augment:`` of the classifiers (dknn, the feature_selection trunk): per-sample augmentation
    of every training batch on the training device, a fresh draw each epoch."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flips: bool = True
    rot90: bool = True
    scale: float = Field(0.1, ge=0, le=0.5, description="zoom in or out by up to this share")
    colour_jitter: float = Field(0.15, ge=0, le=0.5, description="per-channel gain and offset")
    stain_jitter: float = Field(0.05, ge=0, le=0.5, description="optical-density stain jitter")

    def batch(self) -> BatchAugment | None:
        aug = BatchAugment(flips=self.flips, rot90=self.rot90, scale=self.scale, colour_jitter=self.colour_jitter,
                           stain_jitter=self.stain_jitter)
        return aug if aug.active else None
