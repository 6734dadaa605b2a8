"""Hand-crafted colour, texture and shape features of a cell crop (scikit-image).

* colour: 8-bin histograms of H, S and V; mean and std of R, G, B;
* texture: grey-level co-occurrence (32 levels, distances 1 and 2, four angles averaged):
  contrast, dissimilarity, homogeneity, energy, correlation, ASM;
* shape: of the darkest Otsu region (the nucleus, in a stained crop): area share, eccentricity,
  solidity, circularity, and the crop's own size.
"""

from __future__ import annotations

import numpy as np
from skimage import color, filters, measure, transform
from skimage.feature import graycomatrix, graycoprops

_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
FEATURE_NAMES = (
    [f"hist_{c}{i}" for c in "hsv" for i in range(8)]
    + [f"{s}_{c}" for s in ("mean", "std") for c in "rgb"]
    + [f"glcm_{p}_d{d}" for d in (1, 2) for p in _PROPS]
    + ["dark_area", "dark_eccentricity", "dark_solidity", "dark_circularity", "height", "width"]
)


def handcrafted(image: np.ndarray, size: int = 64, resize: str = "stretch") -> np.ndarray:
    """Feature vector (``len(FEATURE_NAMES)`` floats) of one RGB uint8 image of any size.

    The image becomes a ``size`` square by ``resize`` (stretch | pad | crop); the original height
    and width are features of their own, so stretching loses no shape information."""
    h, w = image.shape[:2]
    if resize == "stretch":
        img = transform.resize(image, (size, size), anti_aliasing=True, preserve_range=False)  # float [0,1]
    else:
        from optileuk.data import square_image

        img = square_image(image, size, resize).astype(np.float64)
    hsv = color.rgb2hsv(img)
    hist = [np.histogram(hsv[..., c], bins=8, range=(0, 1))[0] / (size * size) for c in range(3)]
    stats = [img.reshape(-1, 3).mean(0), img.reshape(-1, 3).std(0)]
    grey = (color.rgb2gray(img) * 31).astype(np.uint8)
    glcm = graycomatrix(grey, distances=[1, 2], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32,
                        symmetric=True, normed=True)
    tex = [graycoprops(glcm, p).mean(axis=1) for p in _PROPS]  # (props, distances)
    tex = np.array(tex).T.ravel()
    dark = 1 - hsv[..., 2] + hsv[..., 1]  # stained nuclei are dark and saturated
    try:
        t = filters.threshold_otsu(dark)
    except ValueError:
        t = dark.mean()
    region = dark > t
    labels = measure.label(region)
    shape = [0.0, 0.0, 0.0, 0.0]
    if labels.max() > 0:
        props = max(measure.regionprops(labels), key=lambda r: r.area)
        circ = 4 * np.pi * props.area / max(props.perimeter, 1.0) ** 2
        shape = [props.area / (size * size), props.eccentricity, props.solidity, min(circ, 2.0)]
    return np.concatenate([*hist, *stats, tex, shape, [h / 100.0, w / 100.0]]).astype(np.float64)


def handcrafted_features(images: list[np.ndarray], size: int = 64, resize: str = "stretch") -> np.ndarray:
    """(N, F) matrix of :func:`handcrafted` features."""
    return np.stack([handcrafted(im, size, resize) for im in images]) if images else np.zeros((0, len(FEATURE_NAMES)))
