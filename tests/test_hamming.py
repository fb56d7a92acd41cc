"""The compiled Hamming search gives what OpenCV's batchDistance gives, ties included."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tasks.hamming import two_nearest


def descriptors(rows: st.SearchStrategy[int], levels: int) -> st.SearchStrategy[np.ndarray]:
    # Few levels per byte make equal distances, and so the order of ties, common.
    return rows.flatmap(lambda count: arrays(np.uint8, (count, 32), elements=st.integers(0, levels)))


@settings(max_examples=150, deadline=None)
@given(descriptors(st.integers(1, 60), 3), descriptors(st.integers(2, 60), 3))
def test_same_as_opencv(queries: np.ndarray, references: np.ndarray) -> None:
    expected_distances, expected_indices = cv2.batchDistance(
        queries, references, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2
    )

    distances, indices = two_nearest(queries, references)

    np.testing.assert_array_equal(distances, expected_distances)
    np.testing.assert_array_equal(indices, expected_indices)


def test_full_range_descriptors_and_a_strided_view() -> None:
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    references = rng.integers(0, 256, (500, 32), dtype=np.uint8)[::2]  # not contiguous
    references[7] = queries[3]

    distances, indices = two_nearest(queries, references)

    expected = cv2.batchDistance(queries, references, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    np.testing.assert_array_equal(distances, expected[0])
    np.testing.assert_array_equal(indices, expected[1])
    assert distances[3, 0] == 0 and indices[3, 0] == 7


@pytest.mark.parametrize(
    ("queries", "references"),
    [
        (np.zeros((2, 32), np.uint8), np.zeros((1, 32), np.uint8)),  # one reference: no second nearest
        (np.zeros((2, 12), np.uint8), np.zeros((3, 12), np.uint8)),  # not whole 64-bit words
        (np.zeros((2, 32), np.uint8), np.zeros((3, 16), np.uint8)),  # widths differ
        (np.zeros((2, 32), np.float32), np.zeros((3, 32), np.float32)),  # not binary descriptors
    ],
)
def test_refuses_what_it_cannot_match(queries: np.ndarray, references: np.ndarray) -> None:
    with pytest.raises(ValueError):
        two_nearest(queries, references)
