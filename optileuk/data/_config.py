"""Dataset configs as they appear in study files: ``dataset: {type: ..., ...}``.

Paths are relative to the working directory (like the default SQLite storage).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from optileuk.data._synthetic import ALL_CLASSES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RealismConfig(_Strict):
    stain_jitter: float = Field(0.04, ge=0, le=0.5)
    illumination: float = Field(0.12, ge=0, le=1)
    blur: float = Field(0.6, ge=0, le=5)
    noise: float = Field(0.02, ge=0, le=0.5)
    red_cells: int = Field(5, ge=0, le=50)
    jpeg_quality: int = Field(90, ge=0, le=100, description="0 = no JPEG artefacts")


class SyntheticData(_Strict):
    """The embedded generator (nothing downloaded)."""

    type: Literal["synthetic"]
    kind: Literal["crops", "fields"] = "crops"
    classes: list[str] = Field(default_factory=lambda: ["normal", "L1", "L2", "L3"], min_length=1)
    n_per_class: int = Field(150, ge=1, le=100_000)
    size: int = Field(64, ge=16, le=2048, description="crop side (crops) or field side (fields), pixels")
    difficulty: float = Field(0.5, ge=0, le=1, description="0 = textbook classes, 1 = indistinguishable")
    smears: int = Field(24, ge=1, description="simulated slides (the groups); each has its own stain")
    red_cells_per_field: int = Field(60, ge=0)
    seed: int = Field(0, ge=0)
    realism: RealismConfig = RealismConfig()

    @field_validator("classes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in ALL_CLASSES]
        if bad:
            raise ValueError(f"unknown class {bad[0]!r} (valid: {', '.join(ALL_CLASSES)})")
        if len(set(v)) != len(v):
            raise ValueError("classes must be distinct")
        return v


OnError = Literal["raise", "skip"]


class _Real(_Strict):
    """What every loader of real images shares."""

    min_per_class: int = Field(0, ge=0, description="drop classes with fewer images than this (0 = keep every "
                               "class; a class too small to split is refused with its name)")


class FoldersData(_Real):
    """``<path>/<class>/<image>``; ``group_pattern`` is a regex over file names (group 1, or the match)."""

    type: Literal["folders"]
    path: str
    group_pattern: Optional[str] = None
    classes: Optional[list[str]] = None
    on_error: OnError = "raise"

    @field_validator("group_pattern")
    @classmethod
    def _regex(cls, v):
        import re

        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"group_pattern is not a valid regular expression ({exc})") from None
        return v


class AllIdb1Data(_Real):
    type: Literal["all_idb1"]
    path: str
    on_error: OnError = "raise"


class AllIdb2Data(_Real):
    type: Literal["all_idb2"]
    path: str
    on_error: OnError = "raise"


class CnmcData(_Real):
    type: Literal["cnmc"]
    path: str
    folds: Optional[list[int]] = None
    on_error: OnError = "raise"


class PairsData(_Real):
    """Image/mask pairs with the same stem: ``images/`` + ``masks/`` (or another ``mask_dir``), or side
    by side (``x.jpg`` + ``x_mask.png``). Masks: two levels (binary) or three (background, cytoplasm,
    nucleus, e.g. 0/128/255). A ``labels.csv`` beside ``images/`` (columns: image stem or file name,
    class) gives each image a class, so one folder serves segmentation and classification."""

    type: Literal["pairs"]
    path: str
    mask_dir: str = Field("masks", min_length=1, description="folder of the masks, beside images/")
    labels: Optional[str] = Field(None, description="CSV of image classes (default: labels.csv when present)")
    binary_as: Literal["nucleus", "cell"] = "nucleus"
    on_error: OnError = "raise"


DatasetConfig = Annotated[
    Union[SyntheticData, FoldersData, AllIdb1Data, AllIdb2Data, CnmcData, PairsData], Field(discriminator="type")]
