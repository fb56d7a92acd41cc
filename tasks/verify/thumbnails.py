"""What the correlation and agreement stages read of an image: its grey thumbnail, the thumbnail's fine detail
(fill left out), and the phases of that detail's spectrum for each view the correlation compares.

Measurements behind the constants: docs/VERIFICATION.md, "Thumbnails and fine detail".
"""

from collections.abc import Callable

import cv2
import numpy as np

# Correlation thumbnails: longest side in pixels, and the Gaussian (in thumbnail pixels) whose blur is subtracted
# to keep fine detail only, so that the smooth shading of fields and water does not correlate between scenes.
THUMBNAIL_SIDE: int = 128
HIGH_PASS_SIGMA: float = 2.0
# Images narrower than this (working pixels) carry too little detail for a correlation, or for keypoints on an
# enlarged copy, to mean anything.
MIN_DETAIL_SIDE: int = 32
# Zoom factors (each > 1) the correlation tries both ways, beside a shift at the same scale: each is a view of the
# thumbnail whose spectrum is kept with the image's features.
CORRELATION_ZOOMS: tuple[float, ...] = (2.0,)
# Fill (see `fine_detail`): pixels at most FILL_DARKEST or at least FILL_LIGHTEST whose grey levels vary by at most
# FILL_FLATNESS within FILL_WINDOW_RADIUS pixels. The detail within FILL_MARGIN pixels of them is dropped: the
# border's blur reaches 3 sigma (6 pixels) into the image, and fill within the window radius of the border is not
# flat enough to be found.
FILL_DARKEST: int = 8
FILL_LIGHTEST: int = 247
FILL_FLATNESS: int = 2
FILL_WINDOW_RADIUS: int = 2
FILL_MARGIN: int = 3 * round(HIGH_PASS_SIGMA) + FILL_WINDOW_RADIUS
FILL_WINDOW = np.ones((2 * FILL_WINDOW_RADIUS + 1,) * 2, np.uint8)
_FILL_MARGIN_WINDOW = np.ones((2 * FILL_MARGIN + 1,) * 2, np.uint8)
# Correlation phases are kept in this many steps of a turn (one byte each): see `spectrum_phases`.
PHASE_LEVELS: int = 256


def resized(gray: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def thumbnail_of(gray: np.ndarray) -> np.ndarray:
    """`gray` with its longest side at `THUMBNAIL_SIDE`; 0 x 0 if it is too small to correlate."""
    if min(gray.shape) < MIN_DETAIL_SIDE:
        return np.empty((0, 0), np.uint8)
    return resized(gray, THUMBNAIL_SIDE / max(gray.shape))


def fine_detail(gray: np.ndarray) -> np.ndarray:
    """The fine detail of `gray`: the image minus its Gaussian blur (float32), zero on and near fill.

    Fill is a flat area at either end of the grey scale: the black corners of a turned copy, padding, a
    satellite scene's no-data area. Its straight border would be the strongest detail of the image, and two
    different scenes with the same fill (two copies turned by the same angle) would correlate on it alone."""
    image = gray.astype(np.float32)
    detail = image - cv2.GaussianBlur(image, (0, 0), HIGH_PASS_SIGMA)
    darkest, lightest = cv2.minMaxLoc(gray)[:2]
    if darkest > FILL_DARKEST and lightest < FILL_LIGHTEST:
        return detail  # no fill can be there: most views (about three in four on RSSCN7), at a fraction of the cost
    fill = flat(gray) & ((gray <= FILL_DARKEST) | (gray >= FILL_LIGHTEST))
    if fill.any():
        detail[near(fill)] = 0.0
    return detail


def flat(gray: np.ndarray) -> np.ndarray:
    """Pixels whose grey levels vary by at most `FILL_FLATNESS` within `FILL_WINDOW_RADIUS` pixels."""
    return cv2.dilate(gray, FILL_WINDOW) - cv2.erode(gray, FILL_WINDOW) <= FILL_FLATNESS


def near(pixels: np.ndarray) -> np.ndarray:
    """`pixels` (boolean) and every pixel within `FILL_MARGIN` of them: as far as their border's detail reaches."""
    return cv2.dilate(pixels.view(np.uint8), _FILL_MARGIN_WINDOW).view(bool)


def detail_of_each() -> Callable[[np.ndarray], np.ndarray]:
    """`fine_detail`, taken once per image for as long as the returned function is kept: the views and thumbnails
    of one pair, which its checks read several times. (Keyed by identity: only for arrays that outlive it.)"""
    details: dict[int, np.ndarray] = {}

    def detail(gray: np.ndarray) -> np.ndarray:
        if id(gray) not in details:
            details[id(gray)] = fine_detail(gray)
        return details[id(gray)]

    return detail


def views(thumbnail: np.ndarray, zooms: tuple[float, ...]) -> list[np.ndarray]:
    """The views a correlation compares: the thumbnail, then the thumbnail shrunk by each of `zooms`.

    A zoomed-in view is shrunk to the other image's scale before its detail is taken, so that both keep the same
    band of ground detail."""
    return [thumbnail, *(resized(thumbnail, 1.0 / zoom) for zoom in zooms)]


def spectrum_phases(detail: np.ndarray) -> np.ndarray:
    """The phase of each coefficient of `detail`'s discrete Fourier transform (zero-padded to a `THUMBNAIL_SIDE`
    square; the half that a real image needs), in `PHASE_LEVELS`ths of a turn.

    Whitening the cross-power spectrum keeps only the phase, so that its peak marks the shift rather than the
    strongest texture; a whitened coefficient is the unit number at its phase, so the phase is all an image needs
    to keep (8 KB, against 128 KB for the complex spectrum), and it is computed once per image, with its features.
    Rounding to a level (0.7 degree at most) lowers a correlation peak by less than 0.01 %."""
    canvas = np.zeros((THUMBNAIL_SIDE, THUMBNAIL_SIDE), np.float32)
    canvas[: detail.shape[0], : detail.shape[1]] = detail
    # OpenCV's transform and phase (in float32, within 0.3 degrees) take a quarter of scipy's and numpy's angle
    # time; a level moves by one for about 0.2 % of the coefficients, on rounding.
    spectrum = cv2.dft(canvas, flags=cv2.DFT_COMPLEX_OUTPUT)[:, : THUMBNAIL_SIDE // 2 + 1]
    angles = cv2.phase(np.ascontiguousarray(spectrum[..., 0]), np.ascontiguousarray(spectrum[..., 1]))
    return (np.rint(angles * (PHASE_LEVELS / (2 * np.pi))).astype(np.int32) % PHASE_LEVELS).astype(np.uint8)
