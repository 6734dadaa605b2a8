"""Measurements of a segmented white cell: nucleus and cell shape, nucleus and cytoplasm colour and
texture, taken separately (scikit-image ``regionprops`` and grey-level co-occurrence matrices).

What the seed papers measure by hand once the nucleus is found: how much of the cell is nucleus,
how lobed and irregular the nucleus is, and what the nucleus and the cytoplasm look like (colour
and granularity) — each group of measurements can be switched on or off by the search.

Example:
    >>> img = np.full((40, 40, 3), 220, np.uint8); img[10:30, 10:30] = (150, 110, 190); img[15:25, 15:25] = 60
    >>> nuc = np.zeros((40, 40), bool); nuc[15:25, 15:25] = True
    >>> cell = np.zeros((40, 40), bool); cell[10:30, 10:30] = True
    >>> v = measure_cell(img, nuc, cell)
    >>> round(float(v[CELL_FEATURES.index("nucleus_area_ratio")]), 2)
    0.25
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import color, measure, morphology
from skimage.feature import graycomatrix, graycoprops

_GLCM = ("contrast", "homogeneity", "energy", "correlation")
_COLOUR = [f"{s}_{c}" for s in ("mean", "std") for c in ("r", "g", "b", "L", "a", "B")]

#: Feature names by group; the groups are what the pipeline's ``use_*`` switches turn on or off.
GROUPS: dict[str, list[str]] = {
    "nucleus_shape": ["nucleus_area_ratio", "nucleus_solidity", "nucleus_eccentricity", "nucleus_circularity",
                      "nucleus_extent", "nucleus_axis_ratio", "nucleus_lobes", "nucleus_pieces", "nucleus_concavities",
                      "nucleus_offset", "nucleus_euler"],
    "cell_shape": ["cell_solidity", "cell_eccentricity", "cell_circularity", "cell_axis_ratio", "cell_area_share"],
    "nucleus_colour": [f"nucleus_{c}" for c in _COLOUR],
    "cytoplasm_colour": [f"cytoplasm_{c}" for c in _COLOUR] + ["contrast_L", "contrast_a", "contrast_B"],
    "nucleus_texture": [f"nucleus_glcm_{p}_d{d}" for d in (1, 3) for p in _GLCM] + ["nucleus_entropy"],
    "cytoplasm_texture": [f"cytoplasm_glcm_{p}_d{d}" for d in (1, 3) for p in _GLCM]
                         + ["cytoplasm_entropy", "cytoplasm_granules"],
}
CELL_FEATURES: list[str] = [name for names in GROUPS.values() for name in names]


def _shape(region: np.ndarray) -> tuple[float, float, float, float, float, object]:
    """solidity, eccentricity, circularity, extent, minor/major axis of the largest piece."""
    lab = measure.label(region)
    if lab.max() == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, None
    props = max(measure.regionprops(lab), key=lambda r: r.area)
    circ = min(4 * np.pi * props.area / max(props.perimeter, 1.0) ** 2, 2.0)
    ratio = props.axis_minor_length / props.axis_major_length if props.axis_major_length > 0 else 1.0
    return float(props.solidity), float(props.eccentricity), float(circ), float(props.extent), float(ratio), props


def _colour(rgb: np.ndarray, lab: np.ndarray, region: np.ndarray) -> np.ndarray:
    if region.sum() < 2:
        return np.zeros(12)
    px = np.concatenate([rgb[region], lab[region] / [100.0, 128.0, 128.0]], axis=1)
    return np.concatenate([px.mean(0), px.std(0)])


def _texture(grey: np.ndarray, region: np.ndarray, levels: int = 16) -> np.ndarray:
    """GLCM properties (distances 1 and 3, four angles averaged) and grey-level entropy of the pixels
    of ``region`` only: pixels outside it take level 0, whose row and column are dropped."""
    if region.sum() < 4:
        return np.zeros(2 * len(_GLCM) + 1)
    q = np.clip((grey * levels).astype(int), 0, levels - 1) + 1
    q[~region] = 0
    glcm = graycomatrix(q.astype(np.uint8), distances=[1, 3], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                        levels=levels + 1, symmetric=True, normed=False)[1:, 1:].astype(np.float64)
    sums = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = np.divide(glcm, sums, out=np.zeros_like(glcm), where=sums > 0)
    props = np.array([graycoprops(glcm, p).mean(axis=1) for p in _GLCM]).T.ravel()  # (distances x props)
    hist = np.bincount(q[region] - 1, minlength=levels) / region.sum()
    entropy = -(hist[hist > 0] * np.log2(hist[hist > 0])).sum()
    return np.nan_to_num(np.concatenate([props, [entropy]]))


def lobes(nucleus: np.ndarray) -> int:
    """Lobes of a nucleus: its pieces after an erosion by a tenth of its equivalent diameter (thin
    bridges between lobes break), counting pieces of at least 5% of the nucleus."""
    area = int(nucleus.sum())
    if area == 0:
        return 0
    r = max(1, int(round(0.1 * np.sqrt(4 * area / np.pi))))
    eroded = ndimage.binary_erosion(nucleus, morphology.disk(r))
    sizes = np.bincount(measure.label(eroded).ravel())[1:]
    return max(1, int((sizes >= 0.05 * area / 4).sum())) if len(sizes) else 1


def measure_cell(image: np.ndarray, nucleus: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """``len(CELL_FEATURES)`` measurements of one RGB image given its nucleus and cell masks (the
    cytoplasm is the cell minus the nucleus). Empty masks give zeros, never an error."""
    rgb = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    nucleus = nucleus.astype(bool)
    cell = cell.astype(bool) | nucleus
    cyto = cell & ~nucleus
    lab = color.rgb2lab(rgb)
    grey = color.rgb2gray(rgb)

    n_area, c_area = nucleus.sum(), cell.sum()
    n_sol, n_ecc, n_circ, n_ext, n_ratio, n_props = _shape(nucleus)
    c_sol, c_ecc, c_circ, _, c_ratio, c_props = _shape(cell)
    pieces = int(measure.label(nucleus).max())
    concave = 0
    if n_props is not None:
        hull = morphology.convex_hull_image(nucleus)
        gaps = measure.label(hull & ~nucleus)
        concave = int((np.bincount(gaps.ravel())[1:] >= max(2, 0.02 * hull.sum())).sum())
    offset = 0.0
    if n_props is not None and c_props is not None:
        radius = np.sqrt(c_area / np.pi)
        offset = float(np.hypot(*(np.array(ndimage.center_of_mass(nucleus)) - ndimage.center_of_mass(cell))) / max(radius, 1))
    euler = float(measure.euler_number(nucleus)) if n_area else 0.0
    nucleus_shape = [n_area / max(c_area, 1), n_sol, n_ecc, n_circ, n_ext, n_ratio, lobes(nucleus), pieces, concave,
                     offset, euler]
    cell_shape = [c_sol, c_ecc, c_circ, c_ratio, c_area / nucleus.size]

    n_col, c_col = _colour(rgb, lab, nucleus), _colour(rgb, lab, cyto)
    contrast = (n_col[3:6] - c_col[3:6]) if cyto.sum() >= 2 else np.zeros(3)

    n_tex, c_tex = _texture(grey, nucleus), _texture(grey, cyto)
    granules = 0.0
    if cyto.sum() >= 4:  # share of cytoplasm pixels much darker than the cytoplasm's median (granules)
        g = grey[cyto]
        granules = float((g < np.median(g) - g.std()).mean())
    out = np.concatenate([nucleus_shape, cell_shape, n_col, c_col, contrast, n_tex, c_tex, [granules]])
    return np.nan_to_num(out.astype(np.float64))
