"""The two nearest binary descriptors by Hamming distance, compiled with numba.

Matching ORB descriptors is most of the time verification spends on a pair that does not match. OpenCV's
`cv2.batchDistance(..., normType=NORM_HAMMING, K=2)` costs about 5 ns a distance whatever the descriptor's width
(its loop, not the bit count, is the cost); this kernel compares 64-bit words with the CPU's popcount, one
reference word row at a time, and takes about a fifth of that. It releases the GIL, so verification's threads
match at the same time.
"""

import numba
import numpy as np

_WORD = np.dtype(np.uint64)


@numba.njit(nogil=True, cache=True)
def _bits_set(word: np.uint64) -> np.uint64:
    # The SWAR count, which LLVM compiles to the popcnt instruction.
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + ((word >> np.uint64(2)) & np.uint64(0x3333333333333333))
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (word * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(nogil=True, cache=True)
def _two_nearest(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`two_nearest` on rows of 64-bit words."""
    count, width = queries.shape
    reference_count = len(references)
    # Word-major, so that the inner loop reads consecutive references.
    reference_words = np.ascontiguousarray(references.T)
    distances = np.empty((count, 2), np.int32)
    indices = np.empty((count, 2), np.int32)
    row = np.empty(reference_count, np.uint64)
    for query in range(count):
        row[:] = 0
        for word in range(width):
            bits = queries[query, word]
            for reference in range(reference_count):
                row[reference] += _bits_set(bits ^ reference_words[word, reference])
        # Strictly less: among equal distances the lower index stays first, as in OpenCV.
        first = second = np.uint64(1 << 30)
        first_index = second_index = -1
        for reference in range(reference_count):
            distance = row[reference]
            if distance < first:
                second, second_index = first, first_index
                first, first_index = distance, reference
            elif distance < second:
                second, second_index = distance, reference
        distances[query, 0], distances[query, 1] = first, second
        indices[query, 0], indices[query, 1] = first_index, second_index
    return distances, indices


def two_nearest(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `queries`, the Hamming distances to its nearest and second-nearest rows of `references`
    and their indices (N x 2 int32 arrays each), as `cv2.batchDistance(queries, references, cv2.CV_32S,
    normType=cv2.NORM_HAMMING, K=2)` gives them, ties included. Both are uint8 descriptors of one width, a
    multiple of 8 bytes (ORB's is 32); `references` holds at least two rows."""
    if queries.dtype != np.uint8 or references.dtype != np.uint8 or queries.shape[1:] != references.shape[1:]:
        raise ValueError("descriptors must be uint8 rows of one width")
    if queries.shape[1] % _WORD.itemsize or len(references) < 2:
        raise ValueError(f"descriptors must be a multiple of {_WORD.itemsize} bytes wide, with two references")
    return _two_nearest(np.ascontiguousarray(queries).view(_WORD), np.ascontiguousarray(references).view(_WORD))
