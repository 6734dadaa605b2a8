"""``optileuk data preview``: write sample images and masks so a person can look at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optileuk.data import Dataset

MASK_COLOURS = np.array([[0, 0, 0], [110, 160, 255], [150, 40, 160]], dtype=np.uint8)  # bg, cytoplasm, nucleus


def mask_rgb(mask: np.ndarray) -> np.ndarray:
    return MASK_COLOURS[np.clip(mask, 0, 2)]


def write_preview(ds: Dataset, out: Path, per_class: int, tile: int = 96) -> Path:
    """Per-class sample PNGs (image and mask) and one contact sheet ``sheet.png``."""
    from PIL import Image, ImageDraw

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for c, name in enumerate(ds.classes):
        idx = np.flatnonzero(ds.labels == c)[:per_class]
        tiles = []
        for i in idx:
            img = ds.images[i]
            Image.fromarray(img).save(out / f"{name}_{i}.png")
            pair = [img]
            if ds.masks is not None:
                Image.fromarray(mask_rgb(ds.masks[i])).save(out / f"{name}_{i}_mask.png")
                pair.append(mask_rgb(ds.masks[i]))
            tiles += [np.asarray(Image.fromarray(p).resize((tile, tile), Image.NEAREST)) for p in pair]
        if tiles:
            rows.append((name, np.concatenate(tiles, axis=1)))
    width = max(r.shape[1] for _, r in rows) + 90
    sheet = np.full((tile * len(rows), width, 3), 255, np.uint8)
    for j, (_, r) in enumerate(rows):
        sheet[j * tile:(j + 1) * tile, 90:90 + r.shape[1]] = r
    im = Image.fromarray(sheet)
    draw = ImageDraw.Draw(im)
    for j, (name, _) in enumerate(rows):
        draw.text((6, j * tile + tile // 2 - 6), name, fill=(0, 0, 0))
    path = out / "sheet.png"
    im.save(path)
    return path
