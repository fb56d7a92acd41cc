"""Per-image statistics for the quality issues, measured once while ingest decodes each image.

The measures are chosen so that a decision can be made relative to the dataset (see `robust_z`):
- `brightness`, `contrast`: mean and standard deviation of the grey levels;
- `blur`: variance of the Laplacian (the classic sharpness measure; lower = blurrier, but also lower for smooth
  scenes such as grass, water or fields, and for dark images);
- `sharpness`: log10 of the Laplacian variance over the grey-level variance. Dividing by the image's own
  contrast removes the effect of scene smoothness and of exposure, so a smooth field and a dimmed image keep
  their sharpness while a blurred one loses it;
- `black_level`: the 1st percentile of the grey levels. A bright scene still has shadows; a washed-out
  (over-exposed) image has none, so its darkest pixels are close to white.
"""

import numpy as np
import pandas as pd
from PIL import Image

from tasks.schema import Col

# Images are measured at most this large: blur is judged at a comparable scale for every image, and the cost
# per image stays small for large satellite scenes.
MAX_SIDE = 512


def eight_bit(image: Image.Image) -> Image.Image:
    """`image` with 8-bit grey levels when it has 16-bit ones (modes I;16, I;16B, ...), else `image` itself.

    Pillow's convert() clips 16-bit levels at 255 instead of scaling them, so every 16-bit image would look
    white: measures and signatures must see 0..65535 scaled to 0..255."""
    if not image.mode.startswith("I;16"):
        return image
    levels = np.asarray(image).astype(np.float32) / 257.0
    return Image.fromarray(levels.round().astype(np.uint8))


def measure(image: Image.Image) -> dict[str, float]:
    """Brightness, contrast, blur, sharpness and black level of a decoded image."""
    import cv2  # OpenCV ships with fastdup; imported here so the module imports cheaply

    grey = eight_bit(image).convert("L")
    if max(grey.size) > MAX_SIDE:
        grey.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float32)
    variance = float(pixels.var())
    laplacian = float(cv2.Laplacian(pixels, cv2.CV_32F).var()) if min(pixels.shape) >= 3 else 0.0
    return {
        Col.BRIGHTNESS: float(pixels.mean()),
        Col.CONTRAST: variance**0.5,
        Col.BLUR: laplacian,
        Col.SHARPNESS: float(np.log10((laplacian + 1e-6) / (variance + 1e-6))),
        Col.BLACK_LEVEL: float(np.percentile(pixels, 1)),
    }


SIGNATURE = "colour_signature"  # an internal column of the ingest frame (not in the manifest)
SIGNATURE_BINS = (8, 4, 4)  # hue, saturation, value


def colour_signature(image: Image.Image) -> np.ndarray:
    """A unit-length colour histogram (square-rooted, so a dot product is the Bhattacharyya coefficient).

    It ignores where colours are, so a rotated, mirrored, cropped or rescaled copy keeps the signature of its
    original: it finds verification candidates that a rotation-sensitive embedding ranks too low."""
    import cv2

    small = np.asarray(eight_bit(image).convert("RGB").resize((64, 64), Image.Resampling.BOX))
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(SIGNATURE_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    return np.sqrt(histogram / max(float(histogram.sum()), 1.0)).astype(np.float32)


def robust_z(values: pd.Series, min_spread: float) -> pd.Series:
    """How many robust standard deviations (1.4826 x median absolute deviation) each value lies from the median.

    The median and MAD are what is normal for this dataset; a handful of extreme images cannot move them.
    `min_spread` floors the spread so that a very uniform dataset does not turn tiny differences into outliers.
    """
    known = values.dropna()
    if known.empty:
        return pd.Series(np.nan, index=values.index)
    median = float(known.median())
    spread = max(1.4826 * float((known - median).abs().median()), min_spread)
    return (values - median) / spread
