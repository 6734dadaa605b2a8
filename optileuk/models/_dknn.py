"""DKNN: a small CNN trunk with a Kronecker-factored head and PReLU (or ReLU) activations."""

from __future__ import annotations

from typing import Sequence

import torch  # noqa: F401 (the doctests use it)
from torch import Tensor, nn

from optileuk.models._kronecker import KroneckerConv1x1, KroneckerLinear


def prelu(channels: int, mode: str, init: float) -> nn.PReLU:
    """``mode`` shared: one slope; channel: one slope per channel (torch.nn.PReLU)."""
    return nn.PReLU(num_parameters=1 if mode == "shared" else channels, init=init)


def make_activation(channels: int, kind: str, mode: str, init: float) -> nn.Module:
    """``kind`` prelu: :func:`prelu`; relu: a plain ``nn.ReLU`` (the ablation of the learnt slopes)."""
    if kind == "relu":
        return nn.ReLU()
    if kind != "prelu":
        raise ValueError(f"activation must be prelu or relu, not {kind!r}")
    return prelu(channels, mode, init)


def linear(in_f: int, out_f: int, rank: int, shape=None) -> nn.Module:
    """Dense ``nn.Linear`` when ``rank`` is 0, else :class:`KroneckerLinear`."""
    return nn.Linear(in_f, out_f) if rank == 0 else KroneckerLinear(in_f, out_f, rank, shape)


class ResBlock(nn.Module):
    """``act(x + BN(conv(act(BN(conv(x))))))``: a residual block of two 3x3 convolutions."""

    def __init__(self, channels: int, act) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = act(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = act(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(x + self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))


class DKNN(nn.Module):
    """Conv3x3-BN-PReLU-MaxPool blocks, then ``flatten -> hidden -> classes`` in Kronecker form.

    Args:
        n_classes: outputs.
        image_size: input side (divisible by ``2 ** len(widths)``).
        widths: channels of the conv blocks.
        ranks: Kronecker rank of the two head layers (0 = dense ``nn.Linear``).
        hidden: width of the hidden head layer.
        shapes: factor shapes ``(m1, m2, n1, n2)`` per head layer (``None`` = near-square).
        activation: ``prelu`` (learnt slopes) or ``relu`` (the plain ablation).
        prelu_mode / prelu_init: PReLU slopes shared or per channel, initial slope (prelu only).
        dropout: before the last layer.
        kron_conv_rank: > 0 adds a Kronecker-factored 1x1 convolution after each block.
        depth: residual blocks (:class:`ResBlock`) after each block's first convolution (0: the
            plain trunk).
        pool: the head's input: ``flatten`` (every position of the trunk's last map) or ``avg``
            (global average pooling: one value per channel, blind to where in the crop things are).

    Example:
        >>> net = DKNN(4, image_size=32, widths=(8, 16), ranks=(1, 1), hidden=64)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(self, n_classes: int, *, image_size: int = 64, widths: Sequence[int] = (16, 32, 64),
                 ranks: tuple[int, int] = (2, 2), hidden: int = 256, shapes: tuple | None = None,
                 prelu_mode: str = "channel", prelu_init: float = 0.25, dropout: float = 0.2, kron_conv_rank: int = 0,
                 activation: str = "prelu", depth: int = 0, pool: str = "flatten"):
        super().__init__()
        blocks, c = [], 3

        def act(channels: int) -> nn.Module:
            return make_activation(channels, activation, prelu_mode, prelu_init)

        for w in widths:
            blocks += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), act(w)]
            blocks += [ResBlock(w, act) for _ in range(depth)]
            if kron_conv_rank:
                blocks += [KroneckerConv1x1(w, w, kron_conv_rank), act(w)]
            blocks.append(nn.MaxPool2d(2))
            c = w
        self.trunk = nn.Sequential(*blocks)
        if pool not in ("flatten", "avg"):
            raise ValueError(f"pool must be flatten or avg, not {pool!r}")
        side = image_size // 2 ** len(widths)
        flat = c * side * side if pool == "flatten" else c
        shapes = shapes or (None, None)
        first = [nn.Flatten()] if pool == "flatten" else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.head = nn.Sequential(
            *first, linear(flat, hidden, ranks[0], shapes[0]), act(hidden),
            nn.Dropout(dropout), linear(hidden, n_classes, ranks[1], shapes[1]))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))

    def features(self, x: Tensor) -> Tensor:
        """Deep features: the trunk's output, global-average pooled (one value per channel)."""
        return self.trunk(x).mean(dim=(2, 3))

    def head_parameters(self) -> int:
        return sum(p.numel() for m in self.head if not isinstance(m, (nn.PReLU, nn.ReLU)) for p in m.parameters())

    def head_macs(self) -> int:
        """Multiply-adds of the head's two layers for one image (Kronecker layers in factored form)."""
        return sum(m.macs() if isinstance(m, KroneckerLinear) else m.in_features * m.out_features
                   for m in self.head if isinstance(m, (nn.Linear, KroneckerLinear)))
