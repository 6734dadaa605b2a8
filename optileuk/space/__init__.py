"""Search spaces: typed parameters, Optuna distributions and the optimizers' numeric box."""

from optileuk.space._params import PARAM_TYPES, Param, pack_bits, unpack_bits
from optileuk.space._space import SearchSpace

__all__ = ["PARAM_TYPES", "Param", "SearchSpace", "pack_bits", "unpack_bits"]
