"""Trunks as a first-class thing: the convolutional trunk of a trained DKNN, saved as a safetensors
file that says its architecture and input size, read back (never a pickle) by every objective with
a deep part (``trunk: {weights: <file or run folder>, freeze: true|false|<epochs frozen>}``).

``optileuk train`` of a dknn writes ``trunk.safetensors`` into its run folder; a bare
``state_dict`` of a :class:`~optileuk.models.DKNN` (``.pt``, read with ``weights_only=True``) is
accepted too, its architecture read from the shapes of its tensors (its input size is then unknown).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optileuk.errors import ConfigError, DataError, Problem

TRUNK_FILE = "trunk.safetensors"
FORMAT = "optileuk-trunk/1"
ARCH_KEYS = ("widths", "activation", "prelu_mode", "kron_conv_rank", "depth")  # what fixes the trunk's tensors
ARCH_DEFAULTS = {"depth": 0}  # keys added since the first trunk files


class TrunkConfig(BaseModel):
    """``trunk:`` of an objective with a deep part."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field(description="a trunk file (trunk.safetensors), the run folder optileuk train wrote it "
                         "to, or a DKNN state_dict (.pt); local only, never downloaded")
    freeze: Union[bool, int] = Field(True, description="true: the trunk is not trained; false: fine-tuned with the "
                                                       "head; N: frozen for the first N epochs, then fine-tuned")
    lr_scale: float = Field(0.1, gt=0, le=1.0, description="the trunk's learning rate when fine-tuned, as a "
                                                           "share of the head's (searchable as trunk_lr_scale)")

    @field_validator("freeze")
    @classmethod
    def _epochs_not_negative(cls, v):
        if not isinstance(v, bool) and v < 0:
            raise ValueError(f"must be true, false or the number of epochs frozen (0 or more), got {v}")
        return v


@dataclass
class Trunk:
    """A trunk read from a file: its architecture (:data:`ARCH_KEYS`), input side (``None`` when the
    file does not say) and tensors (keys of ``DKNN.trunk``)."""

    path: Path
    architecture: dict[str, Any]
    image_size: Optional[int]
    tensors: dict[str, Any]
    classes: Optional[list[str]] = None

    def load_into(self, trunk_module) -> None:
        """Copy the weights into a DKNN's ``trunk`` (every tensor must fit: refused otherwise)."""
        try:
            trunk_module.load_state_dict(self.tensors, strict=True)
        except RuntimeError as exc:
            first = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])[:300]
            raise DataError(f"{self.path}: the trunk's weights do not fit its architecture ({first})") from None


def trunk_file(weights: str | Path) -> Path:
    """The trunk file ``weights`` names: itself, or ``trunk.safetensors`` in a run folder."""
    p = Path(weights).expanduser()
    if p.is_dir():
        if not (p / TRUNK_FILE).is_file():
            raise DataError(f"{p}: no {TRUNK_FILE} in this folder (optileuk train writes one for dknn runs; "
                            "train a dknn first, or name a trunk file or a DKNN state_dict)")
        return p / TRUNK_FILE
    if not p.is_file():
        raise DataError(f"{p}: weights file not found (weights are never downloaded; relative paths are read "
                        "from the study file's folder)")
    return p


def read_trunk(weights: str | Path) -> Trunk:
    """Read a trunk file or run folder (safetensors with optileuk's metadata) or a DKNN
    ``state_dict`` (``torch.load(weights_only=True)``: a pickle that would run code is refused).
    Read once per file version: the study loader, the objective and its candidates share it (the
    tensors are copied into a network, never changed)."""
    path = trunk_file(weights).resolve()
    st = path.stat()
    return _read(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _read(path: Path, mtime_ns: int, size: int) -> Trunk:
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickler that refuses anything but tensors and plain containers
        raise DataError(f"{path}: not a trunk file or a DKNN state_dict read as plain tensors "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, Mapping) or not any(str(k).startswith("trunk.") for k in state):
        raise DataError(f"{path}: not a DKNN state_dict (no trunk.* tensors)")
    tensors = {k.removeprefix("trunk."): v for k, v in state.items() if k.startswith("trunk.")}
    return Trunk(path, infer_architecture(tensors, path), None, tensors)


def _read_safetensors(path: Path) -> Trunk:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise DataError(f"{path}: not an optileuk trunk file "
                                f"(format {meta.get('format')!r}, expected {FORMAT!r})")
            tensors = {k.removeprefix("trunk."): f.get_tensor(k) for k in f.keys() if k.startswith("trunk.")}
        arch = json.loads(meta["architecture"])
        arch = {**ARCH_DEFAULTS, **arch}
        return Trunk(path, {k: arch[k] for k in ARCH_KEYS}, int(meta["image_size"]), tensors,
                     json.loads(meta.get("classes", "null")))
    except DataError:
        raise
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: unreadable trunk file ({type(exc).__name__}: {exc})") from None


def infer_architecture(tensors: Mapping[str, Any], where: Path | str = "") -> dict[str, Any]:
    """The trunk architecture a DKNN trunk ``state_dict`` was made with, from its tensors' shapes."""
    convs = sorted((int(m[1]), v) for k, v in tensors.items() if (m := re.fullmatch(r"(\d+)\.weight", k))
                   and getattr(v, "ndim", 0) == 4 and v.shape[-1] == 3)
    if not convs:
        raise DataError(f"{where}: not a DKNN trunk (no 3x3 convolutions)")
    widths = [int(v.shape[0]) for _, v in convs]
    slopes = [v for k, v in tensors.items() if re.fullmatch(r"\d+\.weight", k) and getattr(v, "ndim", 0) == 1
              and k not in {f"{i}.weight" for i, _ in convs} and f"{k.split('.')[0]}.running_mean" not in tensors]
    kron = [v for k, v in tensors.items() if k.endswith(".linear.a")]  # KroneckerConv1x1 factors
    res = [k for k in tensors if re.fullmatch(r"\d+\.conv1\.weight", k)]  # ResBlocks
    return {"widths": widths, "activation": "prelu" if slopes else "relu",
            "prelu_mode": "shared" if slopes and all(v.numel() == 1 for v in slopes) else "channel",
            "kron_conv_rank": int(kron[0].shape[0]) if kron else 0, "depth": len(res) // len(widths)}


def save_trunk(net, architecture: Mapping[str, Any], image_size: int, path: Path, *, classes: list[str],
               trained_on: Mapping[str, Any] | None = None) -> Path:
    """Write ``net.trunk`` as a trunk file that says its architecture, input size and classes."""
    from safetensors.torch import save_file

    tensors = {f"trunk.{k}": v.detach().cpu().contiguous() for k, v in net.trunk.state_dict().items()}
    meta = {"format": FORMAT, "architecture": json.dumps({k: architecture[k] for k in ARCH_KEYS}),
            "image_size": str(int(image_size)), "classes": json.dumps(list(classes)),
            "trained_on": json.dumps(dict(trained_on or {}), default=str)}
    save_file(tensors, str(path), metadata=meta)
    return path


def trunk_spec(net, n_classes: int, image_size: int) -> dict[str, Any]:
    """What a model bundle records to rebuild a DKNN around its trunk (:func:`trunk_net`)."""
    return {"n_classes": int(n_classes), "image_size": int(image_size), **infer_architecture(net.trunk.state_dict())}


def trunk_net(spec: Mapping[str, Any]):
    """A DKNN (a head of rank 2, 1) with the trunk architecture :func:`trunk_spec` recorded; bundles
    written before the architecture was recorded hold a PReLU-per-channel trunk."""
    from optileuk.models import DKNN

    return DKNN(spec["n_classes"], image_size=spec["image_size"], widths=tuple(spec["widths"]), ranks=(2, 1),
                activation=spec.get("activation", "prelu"), prelu_mode=spec.get("prelu_mode", "channel"),
                kron_conv_rank=spec.get("kron_conv_rank", 0), depth=spec.get("depth", 0))


def trunk_mismatch(trunk, image_size: int, widths, size_key: str) -> list[tuple[str, str, Any]]:
    """(key, rule, value) for each way a trunk read from a file does not fit the objective's settings."""
    out = []
    if list(trunk.architecture["widths"]) != list(widths):
        out.append(("objective.widths", f"must be the trunk's widths {trunk.architecture['widths']} ({trunk.path})",
                    list(widths)))
    if trunk.image_size is not None and trunk.image_size != image_size:
        out.append((f"objective.{size_key}", f"must be the trunk's input size {trunk.image_size} ({trunk.path} was "
                    f"trained on {trunk.image_size} px images)", image_size))
    return out


def load_trunk(weights: str, n_classes: int, image_size: int, widths, size_key: str = "image_size"):
    """A DKNN whose trunk comes from the local trunk file, run folder or DKNN ``state_dict``
    ``weights`` (never downloaded, never unpickled), its architecture as the file says."""
    from optileuk.models import DKNN

    trunk = read_trunk(weights)
    bad = trunk_mismatch(trunk, image_size, widths, size_key)
    if bad:
        raise ConfigError([Problem("", key, rule, value) for key, rule, value in bad])
    a = trunk.architecture
    net = DKNN(n_classes, image_size=image_size, widths=tuple(widths), ranks=(2, 1), activation=a["activation"],
               prelu_mode=a["prelu_mode"], kron_conv_rank=a["kron_conv_rank"], depth=a["depth"])
    trunk.load_into(net.trunk)
    return net


def frozen_epochs(freeze: bool | int, epochs: int) -> int:
    """Epochs the trunk stays frozen: all (``true``), none (``false``) or the first N."""
    if isinstance(freeze, bool):
        return epochs if freeze else 0
    return max(0, min(int(freeze), epochs))
