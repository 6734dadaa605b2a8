"""Neural network modules: Kronecker-factored layers, DKNN, U-Net with PReLU."""

from optileuk.models._dknn import DKNN
from optileuk.models._kronecker import KroneckerConv1x1, KroneckerLinear, factor_pair, kronecker_linear
from optileuk.models._unet import UNetPLR

__all__ = ["DKNN", "KroneckerConv1x1", "KroneckerLinear", "UNetPLR", "factor_pair", "kronecker_linear"]
