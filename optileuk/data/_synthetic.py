"""A procedural generator of Giemsa-stained blood-smear cells with pixel masks.

The embedded default data: every study runs on a fresh machine with nothing downloaded.

Classes imitate the FAB morphology (REFERENCES.md): ``normal`` mature lymphocyte (small, dense
dark round nucleus, thin rim of pale blue cytoplasm); ``L1`` (small blast, round nucleus, fine
homogeneous chromatin, scant cytoplasm); ``L2`` (large, heterogeneous, irregular cleft nucleus,
nucleoli, variable cytoplasm); ``L3`` (large, round/oval nucleus, deep-blue basophilic cytoplasm
with vacuoles). Optional extra classes: ``neutrophil`` (lobed nucleus, pink granular cytoplasm)
and ``rbc`` (a red cell with central pallor, no nucleus).

Masks: 0 background, 1 cytoplasm, 2 nucleus (only the white cell of interest is labelled).
Cells come from simulated smears: each smear (the *group*) has its own stain, so grouped splits
matter here as they do on real data. ``difficulty`` in [0, 1] moves the class morphologies
towards each other.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# ---- colours (RGB in [0, 1]) of a typical May-Grunwald-Giemsa smear ---------------------------
PLASMA = np.array([0.93, 0.87, 0.86])
RBC = np.array([0.86, 0.55, 0.58])
NUCLEUS = np.array([0.33, 0.18, 0.47])
CYTO_PALE = np.array([0.72, 0.74, 0.88])
CYTO_BASO = np.array([0.42, 0.48, 0.78])
CYTO_PINK = np.array([0.85, 0.70, 0.80])


@dataclass(frozen=True)
class Morph:
    """Morphology of one class, all radii as fractions of the crop size."""

    cell_r: float  # cell radius
    nc: float  # nucleus radius / cell radius
    irregular: float  # amplitude of the nucleus outline's harmonics
    chroma_dark: float  # darkness of chromatin (0 light .. 1 dark)
    chroma_texture: float  # heterogeneity of chromatin
    nucleoli: int
    cyto: tuple  # cytoplasm colour
    vacuoles: int
    lobes: int = 0
    granules: float = 0.0
    offset: float = 0.0  # nucleus off-centre, fraction of the cell radius


MORPHS = {
    "normal": Morph(0.22, 0.88, 0.03, 0.95, 0.10, 0, tuple(CYTO_PALE), 0, offset=0.05),
    "L1": Morph(0.26, 0.86, 0.04, 0.70, 0.08, 0, tuple(CYTO_PALE * 0.92), 0),
    "L2": Morph(0.38, 0.68, 0.16, 0.55, 0.35, 2, tuple(CYTO_PALE * 0.88), 0, offset=0.12),
    "L3": Morph(0.36, 0.72, 0.05, 0.65, 0.20, 1, tuple(CYTO_BASO), 6),
    "neutrophil": Morph(0.34, 0.55, 0.05, 0.85, 0.10, 0, tuple(CYTO_PINK), 0, lobes=3, granules=0.25),
}
BLAST_CLASSES = ("normal", "L1", "L2", "L3")
ALL_CLASSES = BLAST_CLASSES + ("neutrophil", "rbc")


@dataclass(frozen=True)
class Realism:
    stain_jitter: float = 0.04  # per-smear hue/saturation jitter
    illumination: float = 0.12  # amplitude of the uneven illumination gradient
    blur: float = 0.6  # Gaussian blur sigma, pixels at 64 px
    noise: float = 0.02  # Gaussian noise std
    red_cells: int = 5  # red cells around a crop's white cell (they may touch and overlap)
    jpeg_quality: int = 90  # 0 = no compression artefacts


def _mix(m: Morph, centre: Morph, difficulty: float) -> Morph:
    t = difficulty
    lerp = lambda a, b: a + (b - a) * t  # noqa: E731
    return Morph(lerp(m.cell_r, centre.cell_r), lerp(m.nc, centre.nc), lerp(m.irregular, centre.irregular),
                 lerp(m.chroma_dark, centre.chroma_dark), lerp(m.chroma_texture, centre.chroma_texture),
                 m.nucleoli if t < 0.5 else round(lerp(m.nucleoli, centre.nucleoli)),
                 tuple(lerp(np.array(m.cyto), np.array(centre.cyto))), round(lerp(m.vacuoles, centre.vacuoles)),
                 m.lobes, m.granules, lerp(m.offset, centre.offset))


def _centre_morph() -> Morph:
    ms = [MORPHS[c] for c in BLAST_CLASSES]
    mean = lambda attr: float(np.mean([getattr(m, attr) for m in ms]))  # noqa: E731
    return Morph(mean("cell_r"), mean("nc"), mean("irregular"), mean("chroma_dark"), mean("chroma_texture"),
                 1, tuple(np.mean([m.cyto for m in ms], axis=0)), 2, 0, 0.0, mean("offset"))


def _outline(size: int, cx: float, cy: float, r: float, irregular: float, rng, stretch: float = 1.0):
    """Boolean mask of a blob with a wavy outline (radius r modulated by random harmonics).

    Only the blob's bounding window is computed (fields hold dozens of cells).
    """
    amps = [r * irregular * rng.normal() / (k - 1) for k in (2, 3, 4, 5)]
    phases = [rng.uniform(0, 2 * np.pi) for _ in range(4)]
    reach = r + sum(abs(a) for a in amps)
    out = np.zeros((size, size), bool)
    x0, x1 = max(int(cx - reach / min(stretch, 1.0)) - 1, 0), min(int(cx + reach / min(stretch, 1.0)) + 2, size)
    y0, y1 = max(int(cy - reach / min(stretch, 1.0)) - 1, 0), min(int(cy + reach / min(stretch, 1.0)) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
    dx, dy = xx - cx, (yy - cy) * stretch
    theta = np.arctan2(dy, dx)
    rad = np.full_like(theta, r)
    for k, a, ph in zip((2, 3, 4, 5), amps, phases):
        rad += a * np.cos(k * theta + ph)
    out[y0:y1, x0:x1] = np.hypot(dx, dy) <= rad
    return out


def _smooth_noise(size: int, sigma: float, rng) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma)
    return f / (f.std() + 1e-9)


class Painter:
    """Paints one image in float RGB, with the mask of the white cell of interest."""

    def __init__(self, size: int, rng: np.random.Generator, stain: np.ndarray, realism: Realism, scale: float):
        self.size, self.rng, self.stain, self.real = size, rng, stain, realism
        self.scale = scale  # pixels per pixel of a 64-px crop (blur is given at that scale)
        self.img = np.ones((size, size, 3)) * PLASMA
        self.mask = np.zeros((size, size), np.uint8)

    def paint(self, region: np.ndarray, colour, texture: np.ndarray | None = None, alpha: float = 1.0) -> None:
        c = np.asarray(colour, float)
        val = c if texture is None else c[None, None, :] * (1 + texture[..., None])
        self.img[region] = (1 - alpha) * self.img[region] + alpha * (val[region] if texture is not None else c)

    def red_cell(self, cx: float, cy: float, r: float) -> np.ndarray:
        rng = self.rng
        body = _outline(self.size, cx, cy, r, 0.04, rng, stretch=rng.uniform(0.9, 1.15))
        pallor = _outline(self.size, cx, cy, r * rng.uniform(0.35, 0.5), 0.02, rng)
        self.paint(body, RBC * rng.uniform(0.95, 1.05), alpha=0.92)
        self.paint(body & pallor, (RBC + PLASMA) / 2, alpha=0.7)
        return body

    def white_cell(self, kind: str, morph: Morph, cx: float, cy: float, label: bool = True) -> None:
        rng, s = self.rng, self.size
        r = morph.cell_r * s * rng.uniform(0.9, 1.1)
        cell = _outline(s, cx, cy, r, 0.05 + 0.5 * morph.irregular * 0.3, rng, stretch=rng.uniform(0.92, 1.08))
        cyto_tex = 0.04 * _smooth_noise(s, 1.0, rng)
        self.paint(cell, np.array(morph.cyto), cyto_tex)
        if morph.granules:
            gran = cell & (rng.random((s, s)) < morph.granules)
            self.paint(gran, CYTO_PINK * 0.8, alpha=0.5)
        if morph.vacuoles:
            for _ in range(rng.poisson(morph.vacuoles)):
                a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.55, 0.9) * r
                vac = _outline(s, cx + d * np.cos(a), cy + d * np.sin(a), rng.uniform(0.06, 0.12) * r, 0.0, rng)
                self.paint(vac & cell, PLASMA, alpha=0.75)
        off_a = rng.uniform(0, 2 * np.pi)
        nx, ny = cx + morph.offset * r * np.cos(off_a), cy + morph.offset * r * np.sin(off_a)
        rn = r * morph.nc * rng.uniform(0.95, 1.05)
        if morph.lobes:
            nucleus = np.zeros((s, s), bool)
            for i in range(morph.lobes + rng.integers(0, 2)):
                a = off_a + 2 * np.pi * i / morph.lobes + rng.normal(0, 0.3)
                nucleus |= _outline(s, nx + 0.45 * rn * np.cos(a), ny + 0.45 * rn * np.sin(a), 0.38 * rn, 0.1, rng)
        else:
            nucleus = _outline(s, nx, ny, rn, morph.irregular, rng, stretch=rng.uniform(0.9, 1.12))
        nucleus &= cell
        dark = NUCLEUS * (1.25 - 0.45 * morph.chroma_dark)
        chroma = morph.chroma_texture * 0.25 * _smooth_noise(s, 1.2, rng)
        self.paint(nucleus, dark, chroma)
        for _ in range(morph.nucleoli):
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.5) * rn
            nuc = _outline(s, nx + d * np.cos(a), ny + d * np.sin(a), rng.uniform(0.10, 0.16) * rn, 0.1, rng)
            self.paint(nuc & nucleus, dark * 1.45, alpha=0.8)
        if label:
            self.mask[cell] = 1
            self.mask[nucleus] = 2

    def finish(self) -> np.ndarray:
        rng, real, s = self.rng, self.real, self.size
        img = self.img * self.stain[None, None, :]
        if real.illumination:
            yy, xx = np.mgrid[0:s, 0:s] / s
            a = rng.uniform(0, 2 * np.pi)
            grad = 1 + real.illumination * ((np.cos(a) * xx + np.sin(a) * yy) - 0.5)
            img *= grad[..., None]
        if real.blur:
            img = ndimage.gaussian_filter(img, (real.blur * self.scale, real.blur * self.scale, 0))
        if real.noise:
            img += rng.normal(0, real.noise, img.shape)
        out = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if real.jpeg_quality:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(out).save(buf, format="JPEG", quality=int(real.jpeg_quality))
            out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return out


def smear_stain(rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Per-smear multiplicative stain factor (hue and saturation drift of one slide)."""
    return np.clip(1 + rng.normal(0, jitter, 3), 0.7, 1.3)


def make_crop(kind: str, size: int, rng: np.random.Generator, stain: np.ndarray, realism: Realism,
              difficulty: float) -> tuple[np.ndarray, np.ndarray]:
    """One single-cell crop and its mask."""
    p = Painter(size, rng, stain, realism, scale=size / 64)
    c = size / 2 + rng.normal(0, size * 0.02, 2)
    for _ in range(rng.poisson(realism.red_cells) if kind != "rbc" else 0):
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.42, 0.65) * size
        p.red_cell(c[0] + d * np.cos(a), c[1] + d * np.sin(a), size * rng.uniform(0.16, 0.2))
    if kind == "rbc":
        body = p.red_cell(c[0], c[1], size * rng.uniform(0.28, 0.34))
        p.mask[body] = 1
    else:
        morph = _mix(MORPHS[kind], _centre_morph(), difficulty) if kind in BLAST_CLASSES else MORPHS[kind]
        p.white_cell(kind, morph, c[0], c[1])
    return p.finish(), p.mask


def make_field(kinds: list[str], size: int, rng: np.random.Generator, stain: np.ndarray, realism: Realism,
               difficulty: float, red_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """A field of view: many red cells (touching, overlapping) and the given white cells, masked."""
    p = Painter(size, rng, stain, realism, scale=size / 256)
    r_rbc = size * 0.045
    for _ in range(red_cells):
        p.red_cell(*rng.uniform(0, size, 2), r_rbc * rng.uniform(0.85, 1.15))
    cell_px = 64 * size / 256  # white cells keep their crop-relative size at a 256-px field
    for kind in kinds:
        if kind == "rbc":  # the cell of interest is a red cell: labelled as cell body, no nucleus
            body = p.red_cell(*rng.uniform(size * 0.1, size * 0.9, 2), r_rbc * 1.3)
            p.mask[body] = 1
            continue
        morph = _mix(MORPHS[kind], _centre_morph(), difficulty) if kind in BLAST_CLASSES else MORPHS[kind]
        scaled = Morph(**{**morph.__dict__, "cell_r": morph.cell_r * cell_px / size})
        margin = morph.cell_r * cell_px * 1.3
        p.white_cell(kind, scaled, *rng.uniform(margin, size - margin, 2))
    return p.finish(), p.mask
