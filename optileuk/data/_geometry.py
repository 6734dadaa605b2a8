"""Images of any size and shape into the square input a network takes, and predictions back.

Three explicit policies (``resize`` in every image objective, searchable where the objective says):

* ``pad`` — scale the longer side to ``size`` keeping the aspect ratio, pad the rest (edge pixels
  repeated for images, background for masks). Nothing is cut off or distorted.
* ``crop`` — scale the shorter side to ``size``, keep the centre square. The borders of elongated
  images are lost (a prediction restored to the original shape is background there).
* ``stretch`` — resize both sides to ``size``; the aspect ratio changes.

:func:`to_square` and :func:`from_square` are exact inverses in geometry, so a mask predicted at
the network's resolution is scored against the expert mask at the image's own resolution.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

Resize = Literal["pad", "crop", "stretch"]
RESIZE_POLICIES = ("pad", "crop", "stretch")


def _interp(t: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """(C, H, W) -> (C, h, w); antialiased when a bilinear resize shrinks."""
    if tuple(t.shape[-2:]) == tuple(hw):
        return t
    if mode == "nearest":
        return F.interpolate(t[None], size=hw, mode="nearest")[0]
    shrink = hw[0] < t.shape[-2] or hw[1] < t.shape[-1]
    return F.interpolate(t[None], size=hw, mode="bilinear", align_corners=False, antialias=shrink)[0]


def _scaled(h: int, w: int, size: int, policy: str) -> tuple[int, int]:
    if policy == "stretch":
        return size, size
    s = size / (max(h, w) if policy == "pad" else min(h, w))
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if policy == "pad":
        return min(nh, size), min(nw, size)
    return max(nh, size), max(nw, size)


def to_square(t: torch.Tensor, size: int, policy: str, *, mask: bool = False) -> torch.Tensor:
    """(C, H, W) float tensor -> (C, size, size) by ``policy``; ``mask`` = nearest and background padding.

    Example:
        >>> to_square(torch.ones(3, 20, 40), 16, "pad").shape
        torch.Size([3, 16, 16])
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}, not {policy!r}")
    h, w = t.shape[-2:]
    nh, nw = _scaled(h, w, size, policy)
    t = _interp(t, (nh, nw), "nearest" if mask else "bilinear")
    if policy == "pad" and (nh, nw) != (size, size):
        top, left = (size - nh) // 2, (size - nw) // 2
        pad = (left, size - nw - left, top, size - nh - top)
        t = F.pad(t[None], pad, mode="constant", value=0.0)[0] if mask else F.pad(t[None], pad, mode="replicate")[0]
    elif policy == "crop" and (nh, nw) != (size, size):
        top, left = (nh - size) // 2, (nw - size) // 2
        t = t[..., top:top + size, left:left + size]
    return t.contiguous()


def from_square(t: torch.Tensor, h: int, w: int, policy: str, *, fill: float = 0.0) -> torch.Tensor:
    """(C, size, size) prediction (e.g. logits) -> (C, h, w) on the original image's pixels.

    Pixels a ``crop`` cut off get ``fill`` (use a very negative logit for "background").
    """
    size = t.shape[-1]
    nh, nw = _scaled(h, w, size, policy)
    if policy == "pad":
        top, left = (size - nh) // 2, (size - nw) // 2
        t = t[..., top:top + nh, left:left + nw]
    elif policy == "crop" and (nh, nw) != (size, size):
        out = torch.full((t.shape[0], nh, nw), fill, dtype=t.dtype)
        top, left = (nh - size) // 2, (nw - size) // 2
        out[..., top:top + size, left:left + size] = t
        t = out
    return _interp(t, (h, w), "bilinear")


def square_image(image: np.ndarray, size: int, policy: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (size, size, 3) in [0, 1] by ``policy``."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).div_(255)
    return to_square(t, size, policy).clamp_(0, 1).permute(1, 2, 0).numpy()
