"""The per-image measures match their numpy definitions, whatever the image's size and levels."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from tasks.imagestats import measure
from tasks.schema import Col

grey_images = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda shape: arrays(np.uint8, shape, elements=st.integers(0, 255))
)


@settings(max_examples=200, deadline=None)
@given(grey_images)
def test_measures_are_their_definitions(levels: np.ndarray) -> None:
    measured = measure(Image.fromarray(levels))

    pixels = levels.astype(np.float64)
    laplacian = cv2.Laplacian(pixels, cv2.CV_64F).var() if min(levels.shape) >= 3 else 0.0
    assert measured[Col.BRIGHTNESS] == pytest.approx(pixels.mean(), rel=1e-9)
    # OpenCV takes the variance as a difference of means (about 1e-12 of rounding on a flat image).
    assert measured[Col.CONTRAST] ** 2 == pytest.approx(pixels.var(), rel=1e-6, abs=1e-9)
    assert measured[Col.BLUR] == pytest.approx(laplacian, rel=1e-6, abs=1e-6)
    # The 1st percentile as numpy interpolates it, to the last bit.
    assert measured[Col.BLACK_LEVEL] == pytest.approx(np.percentile(pixels, 1), rel=1e-12, abs=1e-12)
    ratios = []
    for down, across in ((0, 1), (1, 0), (1, 1), (1, -1)):
        if pixels.shape[0] > 4 * down and pixels.shape[1] > 4 * abs(across):
            energy = [np.mean((np.roll(pixels, (-down * step, -across * step), axis=(0, 1)) - pixels)[
                : pixels.shape[0] - down * step, max(0, -across * step) : pixels.shape[1] - max(0, across * step)] ** 2)
                for step in (1, 4)]
            ratios.append(np.log10((energy[0] + 1e-3) / (energy[1] + 1e-3)))
    if ratios:
        assert measured[Col.FINE_DETAIL] == pytest.approx(min(ratios), rel=1e-6, abs=1e-6)
    else:
        assert np.isnan(measured[Col.FINE_DETAIL])
