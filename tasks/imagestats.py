"""Per-image statistics for the quality issues, measured once while ingest decodes each image.

The measures are chosen so that a decision can be made relative to the dataset (see `robust_z`):
- `brightness`, `contrast`: mean and standard deviation of the grey levels;
- `blur`: variance of the Laplacian (the classic sharpness measure; lower = blurrier, but also lower for smooth
  scenes such as grass, water or fields, and for dark images);
- `sharpness`: log10 of the Laplacian variance over the grey-level variance. Dividing by the image's own
  contrast removes the effect of scene smoothness and of exposure, so a smooth field and a dimmed image keep
  their sharpness while a blurred one loses it;
- `fine_detail`: log10 of the energy of differences between neighbouring pixels over that of differences between
  pixels `_COARSE_STEP` apart, in whichever of four directions it is lowest. Detail at every scale keeps it near
  its dataset's (about -0.5 for aerial tiles, 0 for noise); blur removes the finest first, and a smear (motion
  blur) removes it along one direction only, which the Laplacian, summed over directions, hardly sees. It does not
  depend on exposure or contrast;
- `black_level`: the 1st percentile of the grey levels. A bright scene still has shadows; a washed-out
  (over-exposed) image has none, so its darkest pixels are close to white.
"""

import numpy as np
import pandas as pd
from PIL import Image

from tasks.images import eight_bit
from tasks.schema import Col

# Images are measured at most this large: blur is judged at a comparable scale for every image, and the cost
# per image stays small for large satellite scenes.
MAX_SIDE = 512


def measure(image: Image.Image) -> dict[str, float]:
    """Brightness, contrast, blur, sharpness and black level of a decoded image."""
    import cv2  # OpenCV ships with fastdup; imported here so the module imports cheaply

    grey = eight_bit(image).convert("L")
    if max(grey.size) > MAX_SIDE:
        grey.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    levels = np.asarray(grey)
    # OpenCV's statistics and a histogram's percentile rather than numpy's var and percentile: ingest measures
    # on several threads, and numpy's held the GIL for a third of ingest's time on small tiles.
    mean, deviation = (float(value[0, 0]) for value in cv2.meanStdDev(levels))
    variance = deviation**2
    laplacian = float(cv2.meanStdDev(cv2.Laplacian(levels, cv2.CV_32F))[1][0, 0] ** 2) if min(levels.shape) >= 3 \
        else 0.0
    return {
        Col.BRIGHTNESS: mean,
        Col.CONTRAST: deviation,
        Col.BLUR: laplacian,
        Col.SHARPNESS: float(np.log10((laplacian + 1e-6) / (variance + 1e-6))),
        Col.FINE_DETAIL: _fine_detail(levels),
        Col.BLACK_LEVEL: _percentile(levels, 0.01),
    }


# Across, down and along both diagonals: a smear in any direction lies within 22.5 degrees of one of them.
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
_COARSE_STEP = 4


def _difference_energy(levels: np.ndarray, down: int, across: int) -> float:
    """Mean squared difference between each pixel and the one `down` rows below and `across` columns right."""
    import cv2

    height, width = levels.shape
    first = levels[: height - down, max(0, -across) : width - max(0, across)]
    second = levels[down:, max(0, across) : max(0, across) + first.shape[1]]
    mean, deviation = cv2.meanStdDev(cv2.absdiff(first, second))
    return float(mean[0, 0] ** 2 + deviation[0, 0] ** 2)


def _fine_detail(levels: np.ndarray) -> float:
    """`fine_detail` of 8-bit grey `levels`; NaN when the image is too small to hold a coarse step (no direction
    fits)."""
    ratios = [
        np.log10((_difference_energy(levels, down, across) + 1e-3)
                 / (_difference_energy(levels, down * _COARSE_STEP, across * _COARSE_STEP) + 1e-3))
        for down, across in _DIRECTIONS
        if levels.shape[0] > down * _COARSE_STEP and levels.shape[1] > abs(across) * _COARSE_STEP
    ]
    return float(min(ratios)) if ratios else float("nan")


def _percentile(levels: np.ndarray, share: float) -> float:
    """The `share` quantile of 8-bit levels, interpolated linearly between the two nearest ranks as
    `np.percentile` does, from their histogram instead of a partial sort (OpenCV's: numpy's bincount took four
    times as long, holding the GIL)."""
    import cv2

    ranks = np.cumsum(cv2.calcHist([levels], [0], None, [256], [0, 256]).ravel().astype(np.int64))
    position = share * (levels.size - 1)
    below = int(position)
    low, high = np.searchsorted(ranks, [below, min(below + 1, levels.size - 1)], side="right")
    return float(low + (position - below) * (high - low))


SIGNATURE = "colour_signature"  # internal columns of the ingest frame (not in the manifest)
PART_SIGNATURES = "part_signatures"
# Hue, saturation, value of a coloured pixel. A pixel whose saturation is below GREY_SATURATION has no hue to
# speak of and is counted by value alone, at GREY_LEVELS levels: grey (panchromatic) images differ in value
# alone, and with eight levels their signatures told too few scenes apart to propose their natural overlaps.
SIGNATURE_BINS = (8, 4, 6)
GREY_SATURATION, GREY_LEVELS = 8, 64
SIGNATURE_LENGTH = GREY_LEVELS + int(np.prod(SIGNATURE_BINS))
# Part signatures: colour histograms of half-size windows on a 3 x 3 grid at quarter-size steps, so any region
# of half the image's side lies within an eighth of the side of one window.
_SIGNATURE_SIDE = 64
_WINDOW_SIDE, _WINDOW_STEP = _SIGNATURE_SIDE // 2, _SIGNATURE_SIDE // 4
PART_WINDOWS = len(range(0, _SIGNATURE_SIDE - _WINDOW_SIDE + 1, _WINDOW_STEP)) ** 2


def _histogram(hsv: np.ndarray) -> np.ndarray:
    """A unit-length colour histogram of HSV pixels (square-rooted, so a dot product is the Bhattacharyya
    coefficient): `GREY_LEVELS` bins of value for the grey pixels, then `SIGNATURE_BINS` for the others."""
    import cv2  # OpenCV ships with fastdup; imported here so the module imports cheaply

    grey = (hsv[..., 1] < GREY_SATURATION).astype(np.uint8)
    histogram = np.concatenate([
        cv2.calcHist([hsv], [2], grey, [GREY_LEVELS], [0, 256]).ravel(),
        cv2.calcHist([hsv], [0, 1, 2], 1 - grey, list(SIGNATURE_BINS), [0, 180, GREY_SATURATION, 256, 0, 256]).ravel(),
    ])
    return np.sqrt(histogram / max(float(histogram.sum()), 1.0)).astype(np.float32)


def colour_signatures(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The image's colour signature, and the signatures of its parts (`PART_WINDOWS` windows of half its side,
    as uint8 levels of 1/255, flattened).

    The signature ignores where colours are, so a rotated, mirrored, cropped or rescaled copy keeps the
    signature of its original: it finds verification candidates that a rotation-sensitive embedding ranks too
    low. A 2x zoom into part of an image, or a small crop of it, has the colours of one part of the original
    rather than of the whole: the part signatures find those. Levels of 1/255 keep them at 2,304 bytes an image."""
    import cv2

    small = np.asarray(eight_bit(image).convert("RGB").resize((_SIGNATURE_SIDE,) * 2, Image.Resampling.BOX))
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    starts = range(0, _SIGNATURE_SIDE - _WINDOW_SIDE + 1, _WINDOW_STEP)
    parts = [_histogram(np.ascontiguousarray(hsv[y : y + _WINDOW_SIDE, x : x + _WINDOW_SIDE]))
             for y in starts for x in starts]
    return _histogram(hsv), np.round(np.concatenate(parts) * 255.0).astype(np.uint8)


STRUCTURE = "structure_signature"
# Structure signatures: the lowest STRUCTURE_FREQUENCIES x STRUCTURE_FREQUENCIES spatial frequencies of the grey
# image shrunk to _STRUCTURE_SIDE pixels a side.
_STRUCTURE_SIDE, STRUCTURE_FREQUENCIES = 32, 8


def structure_signature(image: Image.Image) -> np.ndarray:
    """Where the image is light and dark, whatever its colours: the lowest spatial frequencies of its grey levels
    (a DCT of the grey image at 32 x 32, the mean left out), as a unit vector in int8 levels of 1/127, row
    frequency major (64 bytes; all zeros for a flat image).

    A copy that changed only colour, brightness, contrast, compression, noise or size keeps its original's
    signature, even where the colour signature and the embedding move far (a grey or heavily re-compressed
    copy). `dihedral_variants` gives the signatures of its flips and quarter turns without decoding again."""
    import cv2

    grey = eight_bit(image).convert("L").resize((_STRUCTURE_SIDE,) * 2, Image.Resampling.BOX)
    frequencies = cv2.dct(np.asarray(grey, np.float32))[:STRUCTURE_FREQUENCIES, :STRUCTURE_FREQUENCIES].copy()
    frequencies[0, 0] = 0.0  # the mean: brightness, not structure
    norm = float(np.linalg.norm(frequencies))
    unit = frequencies / norm if norm > 0.0 else frequencies
    return np.round(unit.ravel() * 127.0).astype(np.int8)


DIHEDRAL_VARIANTS = 8


def dihedral_variants(signatures: np.ndarray) -> np.ndarray:
    """The structure signatures (N x 64) of each image's 8 flips and quarter turns, the image itself first, as
    N x 8 consecutive rows. Mirroring an image negates its odd frequencies along the mirrored axis, and
    transposing it transposes its frequencies, so the variants are sign changes and transposes."""
    n = STRUCTURE_FREQUENCIES
    grids = signatures.reshape(-1, n, n)
    odd = np.where(np.arange(n) % 2 == 1, -1, 1).astype(signatures.dtype)
    variants = [
        grid * rows * columns
        for grid in (grids, grids.transpose(0, 2, 1))
        for rows in (np.ones((n, 1), signatures.dtype), odd[:, None])
        for columns in (np.ones((1, n), signatures.dtype), odd[None, :])
    ]
    return np.stack(variants, axis=1).reshape(-1, n * n)


def robust_z(values: pd.Series, min_spread: float, baseline: pd.Series | None = None) -> pd.Series:
    """How many robust standard deviations (1.4826 x median absolute deviation) each value lies from the median.

    The median and MAD are what is normal for this dataset (for the `baseline` rows only, when given); a handful
    of extreme images cannot move them. `min_spread` floors the spread so that a very uniform dataset does not
    turn tiny differences into outliers.
    """
    known = (values if baseline is None else values[baseline.to_numpy(dtype=bool)]).dropna()
    if known.empty:
        return pd.Series(np.nan, index=values.index)
    median = float(known.median())
    spread = max(1.4826 * float((known - median).abs().median()), min_spread)
    return (values - median) / spread
