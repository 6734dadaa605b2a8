"""U-Net with parametric leaky ReLU (PReLU), as in seed 003 ("U-Net PLR")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from optileuk.models._dknn import prelu


def _double(cin: int, cout: int, mode: str, init: float, norm: bool = False) -> nn.Sequential:
    bn = (lambda: nn.BatchNorm2d(cout)) if norm else (lambda: nn.Identity())
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=not norm), bn(), prelu(cout, mode, init),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=not norm), bn(), prelu(cout, mode, init))


class UNetPLR(nn.Module):
    """Encoder 3x3 convs ``base * 2**i`` with PReLU and max-pooling, decoder with up-sampling and
    skip concatenations, a 1x1 output (logits; apply a sigmoid for the mask). ``norm`` adds batch
    normalisation after each convolution. ``prelu_mode``: one slope per channel (``channel``) or
    one per layer (``shared``).

    Example:
        >>> net = UNetPLR(depth=2, base=8)
        >>> net(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(self, depth: int = 3, base: int = 32, in_channels: int = 3, prelu_mode: str = "channel",
                 prelu_init: float = 0.25, norm: bool = False, out_channels: int = 1):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(_double(c, w, prelu_mode, prelu_init, norm))
            c = w
        self.bottom = _double(c, widths[-1], prelu_mode, prelu_init, norm)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(nn.ConvTranspose2d(w_in, w_skip, 2, stride=2))
            self.merge.append(_double(2 * w_skip, w_skip, prelu_mode, prelu_init, norm))
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.out(x)
