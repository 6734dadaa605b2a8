"""Kronecker-factored layers: ``W = sum_r A_r (x) B_r`` without ever building ``W``.

With ``X = reshape(x, n1, n2)`` (row-major), ``(A (x) B) x = vec(A X B^T)``; a layer of
``m1*m2 x n1*n2`` weights then has ``R (m1 n1 + m2 n2)`` parameters (REFERENCES.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def kronecker_linear(x: Tensor, a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y = sum_r (a[r] (x) b[r]) x + bias`` for a batch ``x`` of shape (N, n1*n2).

    ``a``: (R, m1, n1), ``b``: (R, m2, n2). Cost per sample R*min(m2 n1 (n2 + m1), m1 n2 (n1 + m2)).
    """
    r, m1, n1 = a.shape
    _, m2, n2 = b.shape
    xs = x.reshape(-1, n1, n2)
    if m2 * n1 * (n2 + m1) <= m1 * n2 * (n1 + m2):
        t = torch.einsum("njk,rlk->rnjl", xs, b)  # X B^T: (R, N, n1, m2)
        y = torch.einsum("rij,rnjl->nil", a, t)  # A (X B^T)
    else:
        t = torch.einsum("rij,njk->rnik", a, xs)  # A X: (R, N, m1, n2)
        y = torch.einsum("rnik,rlk->nil", t, b)  # (A X) B^T
    y = y.reshape(x.shape[0], m1 * m2)
    return y if bias is None else y + bias


def factor_pair(n: int) -> tuple[int, int]:
    """The divisor pair of ``n`` closest to a square, e.g. 4096 -> (64, 64), 10 -> (2, 5)."""
    best = 1
    for d in range(1, int(math.isqrt(n)) + 1):
        if n % d == 0:
            best = d
    return best, n // best


class KroneckerLinear(nn.Module):
    """A linear layer whose weight is a sum of ``rank`` Kronecker products.

    Args:
        in_features: ``n1 * n2``.
        out_features: ``m1 * m2``.
        rank: number of Kronecker terms ``R``.
        shape: ``(m1, m2, n1, n2)``; default: the near-square factor pairs of both sizes.
        bias: add a learnable bias.

    Example:
        >>> layer = KroneckerLinear(4096, 256, rank=2)
        >>> layer.shape, sum(p.numel() for p in (layer.a, layer.b))
        ((16, 16, 64, 64), 4096)
        >>> layer(torch.zeros(3, 4096)).shape
        torch.Size([3, 256])
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 1, shape: tuple[int, int, int, int] | None = None,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if shape is None:
            m1, m2 = factor_pair(out_features)
            n1, n2 = factor_pair(in_features)
            shape = (m1, m2, n1, n2)
        m1, m2, n1, n2 = shape
        if m1 * m2 != out_features or n1 * n2 != in_features:
            raise ValueError(f"shape {shape} does not factor {out_features} x {in_features} (m1*m2 x n1*n2)")
        self.in_features, self.out_features, self.rank, self.shape = in_features, out_features, rank, tuple(shape)
        kw = {"device": device, "dtype": dtype}
        self.a = nn.Parameter(torch.empty(rank, m1, n1, **kw))
        self.b = nn.Parameter(torch.empty(rank, m2, n2, **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Var(W_ij) = R Var(a) Var(b) = R bound^4 / 9 = 1 / (3 in_features), as nn.Linear's default init
        m1, m2, n1, n2 = self.shape
        bound = (3.0 / (self.rank * self.in_features)) ** 0.25
        nn.init.uniform_(self.a, -bound, bound)
        nn.init.uniform_(self.b, -bound, bound)
        if self.bias is not None:
            fan = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -fan, fan)

    def forward(self, x: Tensor) -> Tensor:
        return kronecker_linear(x, self.a, self.b, self.bias)

    def macs(self) -> int:
        """Multiply-adds per sample of :func:`kronecker_linear` (the cheaper of its two orders)."""
        m1, m2, n1, n2 = self.shape
        return self.rank * min(m2 * n1 * (n2 + m1), m1 * n2 * (n1 + m2))

    def dense_weight(self) -> Tensor:
        """The full ``out x in`` weight (for tests and inspection only)."""
        return sum(torch.kron(self.a[r], self.b[r]) for r in range(self.rank))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"shape={self.shape}, bias={self.bias is not None}")


class KroneckerConv1x1(nn.Module):
    """A 1x1 convolution whose channel-mixing weight is Kronecker-factored."""

    def __init__(self, in_channels: int, out_channels: int, rank: int = 1, shape=None, bias: bool = True):
        super().__init__()
        self.linear = KroneckerLinear(in_channels, out_channels, rank, shape, bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        y = self.linear(x.permute(0, 2, 3, 1).reshape(-1, c))
        return y.reshape(n, h, w, -1).permute(0, 3, 1, 2)
