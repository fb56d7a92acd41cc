"""Reading images: one decode policy for ingest, verification and the report.

A file is unreadable when Pillow raises anything while opening or decoding it, or when it holds more pixels than
Pillow's limit (`Image.MAX_IMAGE_PIXELS`). Ingest records why (`unreadable_reason`); later readers, which may
find a file changed since ingest, treat it as missing (`load_reduced` returns None).
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Formats Pillow registers for opening that it cannot decode by itself: stubs that need a handler installed by the
# application (BUFR, GRIB, HDF5, WMF), PostScript (rendered by Ghostscript), video (MPEG is only identified) and
# IPTC metadata.
_NOT_DECODED = frozenset({"BUFR", "GRIB", "HDF5", "WMF", "EPS", "MPEG", "IPTC"})


def image_suffixes() -> tuple[str, ...]:
    """Every file suffix of a raster format this Pillow opens and decodes, lower case: the default `extensions`."""
    Image.init()
    registered = Image.registered_extensions()
    return tuple(sorted(suffix for suffix, format in registered.items()
                        if format in Image.OPEN and format not in _NOT_DECODED))


@contextmanager
def opened(source: Path | str | bytes) -> Iterator[Image.Image]:
    """`Image.open` of a path or of a file's bytes (the header only), refused with `DecompressionBombError` above
    Pillow's pixel limit.

    Pillow itself refuses only twice its limit and merely warns below that; a warning filter cannot turn the
    warning into an error here, as filters are process-wide and images are decoded in threads."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and image.width * image.height > limit:
            raise Image.DecompressionBombError(
                f"Image size ({image.width * image.height} pixels) exceeds limit of {limit} pixels, could be a "
                "decompression bomb"
            )
        yield image


def unreadable_reason(error: Exception) -> str:
    """Why a file that raised `error` while opened or decoded is unreadable, in the manifest's words."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image in a format Pillow can read"
    if isinstance(error, Image.DecompressionBombError):
        return f"too many pixels to decode safely: {error}"
    return f"cannot decode image: {error}"


def eight_bit(image: Image.Image) -> Image.Image:
    """`image` with 8-bit grey levels when it has 16-bit ones (modes I;16, I;16B, ...), else `image` itself.

    Pillow's convert() clips 16-bit levels at 255 instead of scaling them, so every 16-bit image would look
    white: measures and signatures must see 0..65535 scaled to 0..255."""
    if not image.mode.startswith("I;16"):
        return image
    levels = np.asarray(image).astype(np.float32) / 257.0
    return Image.fromarray(levels.round().astype(np.uint8))


def load_reduced(path: Path | str, mode: str, side: int) -> Image.Image | None:
    """`path` decoded and converted to `mode` ("L" or "RGB"), by a decoder allowed to skip detail down to about
    `side` pixels on the longest side (JPEG's DCT scaling: a large photo decodes several times faster; the result
    may still be larger). None when the file is unreadable, as ingest would find it."""
    try:
        with opened(path) as image:
            image.draft(mode, (side, side))
            return eight_bit(image).convert(mode)
    except Exception:  # noqa: BLE001 - any decoder failure means the file is unreadable, as at ingest
        return None
