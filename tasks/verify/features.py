"""Features of one image, computed once and reused for every pair it takes part in: ORB keypoints of a working
image and of its mirror image, the grey thumbnail, and the spectrum phases of the thumbnail's views.

They hold only numpy arrays, so they can be pickled and cached. Measurements behind the constants:
docs/VERIFICATION.md, "Features".
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.images import eight_bit, opened
from tasks.verify.thumbnails import (
    CORRELATION_ZOOMS, MIN_DETAIL_SIDE, THUMBNAIL_SIDE, fine_detail, resized, spectrum_phases, thumbnail_of, views,
)

# ORB descriptor patch and border width, in working pixels.
PATCH_SIZE: int = 19
# FAST corner threshold used first, and the one retried when an image yields under half of its keypoints (smooth
# scenes such as grass and water).
FAST_THRESHOLD: int = 20
LOW_TEXTURE_FAST_THRESHOLD: int = 5
# Share of pixels clipped at each end when stretching grey levels (`stretch_contrast`).
CONTRAST_CLIP: float = 0.01
# Keypoints are found on images enlarged to at least this longest side: on a 64-pixel tile ORB's pyramid and
# 19-pixel patches leave a half-area crop of it with almost no corners (none of 60 such crops matched; 56 of 60
# after enlarging).
MIN_KEYPOINT_SIDE: int = 128
# What Pillow raises on files it cannot decode (missing, truncated, not an image, too large).


@dataclass(frozen=True)
class Resolution:
    """How finely an image is described: the longest side of its working image (larger images are shrunk to it),
    the most ORB keypoints kept (a pair's matching time grows with its square), and how many of the strongest are
    also described on the mirrored image, to match mirror copies."""

    max_side: int
    n_features: int
    mirror_features: int


# Every pair is matched at the working resolution; only doubtful pairs at the fine one (`tasks.verify.cascade`).
# The fine pass describes the same share of its keypoints mirrored: with 100 of 500, a heavily cropped, turned and
# mirrored copy kept too few of its original's mirrored keypoints.
WORKING = Resolution(max_side=200, n_features=250, mirror_features=100)
FINE = Resolution(max_side=400, n_features=500, mirror_features=200)


@dataclass(frozen=True)
class ImageFeatures:
    """ORB features of one image and of its horizontal mirror, in working-image pixel coordinates, plus what the
    correlation stage needs of it.

    `points`/`descriptors` come from the image itself, strongest corner first; `mirror_points`/`mirror_descriptors`
    describe the strongest `mirror_features` of them on the image flipped left-right (coordinates in the flipped
    frame). `scale` converts original to working pixels. `thumbnail` is the grey image with its longest side at
    `THUMBNAIL_SIDE` (uint8, 16 KB at most: a chunk holds the features of every image it touches), or 0 x 0
    when the image is too small to correlate; its fine detail is taken when a pair needs it. `phases` holds the
    spectrum phases (`spectrum_phases`) of the fine detail of each of its views (`views`: the thumbnail, then the
    thumbnail shrunk by each of `correlation_zooms`), 8 KB each; none when it is too small to correlate.
    """

    path: str
    width: int
    height: int
    scale: float
    points: np.ndarray
    descriptors: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    thumbnail: np.ndarray
    phases: np.ndarray
    correlation_zooms: tuple[float, ...]

    @property
    def enlarged(self) -> bool:
        """Whether the working image is larger than the original (`MIN_KEYPOINT_SIDE`)."""
        return self.scale > 1.0

    @property
    def nbytes(self) -> int:
        """Bytes its arrays hold."""
        return sum(array.nbytes for array in (self.points, self.descriptors, self.mirror_points,
                                              self.mirror_descriptors, self.thumbnail, self.phases))


def _load_working_gray(path: str, max_side: int) -> tuple[np.ndarray, float] | None:
    """Decode `path` as 8-bit grey at most `max_side` on its longest side; return it and original->working scale."""
    try:
        with opened(path) as image:
            original_width = image.width
            # draft() lets the JPEG decoder skip detail via DCT scaling: a large photo decodes several times faster.
            image.draft("L", (max_side, max_side))
            gray = np.asarray(eight_bit(image).convert("L"))
    except Exception:  # noqa: BLE001 - any decoder failure means the file is unreadable, as at ingest
        return None
    if gray.ndim != 2 or min(gray.shape) < 1:
        return None
    longest = max(gray.shape)
    if longest > max_side:
        factor = max_side / longest
        size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray, gray.shape[1] / original_width


def stretch_contrast(gray: np.ndarray, clip_share: float = CONTRAST_CLIP) -> np.ndarray:
    """Map grey levels between the `clip_share` and 1 - `clip_share` quantiles linearly onto 0..255."""
    cumulative = np.cumsum(cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()) / gray.size
    low = int(np.searchsorted(cumulative, clip_share))
    high = int(np.searchsorted(cumulative, 1.0 - clip_share))
    if high <= low:
        return gray
    levels = (np.arange(256, dtype=np.float32) - low) * (255.0 / (high - low))
    return cv2.LUT(gray, np.clip(levels, 0, 255).astype(np.uint8))


def _orb(n_features: int, fast_threshold: int) -> cv2.ORB:
    # Created per call (it costs about a microsecond) because sharing one detector across threads is not safe.
    return cv2.ORB_create(n_features, edgeThreshold=PATCH_SIZE, patchSize=PATCH_SIZE, fastThreshold=fast_threshold)


def _as_arrays(keypoints: Sequence[cv2.KeyPoint], descriptors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions (N x 2 float32) and descriptors (N x 32 uint8), empty arrays when there are none."""
    if descriptors is None or not keypoints:
        return np.empty((0, 2), np.float32), np.empty((0, 32), np.uint8)
    return cv2.KeyPoint_convert(keypoints).reshape(-1, 2), descriptors


def _detect(gray: np.ndarray, n_features: int) -> tuple[Sequence[cv2.KeyPoint], np.ndarray | None, np.ndarray]:
    """ORB keypoints and descriptors of `gray`, and the order of the keypoints from the strongest corner down (a
    prefix in that order is the most repeatable subset); none when the image is too small to hold a corner inside
    ORB's border."""
    if min(gray.shape) <= 2 * PATCH_SIZE:  # OpenCV's pyramid also fails outright on 1-pixel images
        return (), None, np.empty(0, np.int64)
    keypoints, descriptors = _orb(n_features, FAST_THRESHOLD).detectAndCompute(gray, None)
    if len(keypoints) < n_features // 2:
        keypoints, descriptors = _orb(n_features, LOW_TEXTURE_FAST_THRESHOLD).detectAndCompute(gray, None)
    # Sorted in numpy rather than as Python objects: this runs with the GIL held while the other threads wait.
    return keypoints, descriptors, np.argsort([-keypoint.response for keypoint in keypoints], kind="stable")


def extract_features(path: str | Path, resolution: Resolution = WORKING) -> ImageFeatures | None:
    """Compute ORB features of the image at `path` and of its mirror image; None if it cannot be decoded."""
    loaded = _load_working_gray(str(path), resolution.max_side)
    if loaded is None:
        return None
    gray, scale = loaded
    thumbnail = thumbnail_of(gray)
    if max(gray.shape) < MIN_KEYPOINT_SIDE and min(gray.shape) >= MIN_DETAIL_SIDE:
        enlarged = resized(gray, MIN_KEYPOINT_SIDE / max(gray.shape))
        gray, scale = enlarged, scale * enlarged.shape[1] / gray.shape[1]
    # A global stretch (not CLAHE, whose tiles change under cropping) cancels brightness and contrast edits and
    # lifts smooth scenes such as water and grass towards the FAST threshold.
    gray = stretch_contrast(gray)
    keypoints, descriptors, strongest_first = _detect(gray, resolution.n_features)
    # Detection is mirror-symmetric, so reflecting the keypoints (position and orientation) and describing them
    # on the flipped image gives nearly what detecting on the flipped image would, without detecting twice. Only
    # the strongest are mirrored: a mirrored copy shares most of its corners, so a few suffice, and the mirror
    # retry then costs a fraction of the direct match.
    width = gray.shape[1]
    points, descriptors = _as_arrays(keypoints, descriptors)
    points, descriptors = points[strongest_first], descriptors[strongest_first]
    # The strongest keypoints are turned into their mirror images in place (no longer needed as they were):
    # constructing new ones would release and retake the GIL once per keypoint, which stalls the other threads.
    mirrored_keypoints = [keypoints[i] for i in strongest_first[: resolution.mirror_features]]
    for keypoint in mirrored_keypoints:
        keypoint.pt = (width - 1 - keypoint.pt[0], keypoint.pt[1])
        keypoint.angle = (180.0 - keypoint.angle) % 360.0
    mirrored_keypoints, mirror_descriptors = _orb(resolution.n_features, FAST_THRESHOLD).compute(
        cv2.flip(gray, 1), mirrored_keypoints
    ) if mirrored_keypoints else ((), None)
    mirror_points, mirror_descriptors = _as_arrays(mirrored_keypoints, mirror_descriptors)
    thumbnail_views = views(thumbnail, CORRELATION_ZOOMS) if thumbnail.size else []
    return ImageFeatures(
        path=str(path),
        width=width,
        height=gray.shape[0],
        scale=scale,
        points=points,
        descriptors=descriptors,
        mirror_points=mirror_points,
        mirror_descriptors=mirror_descriptors,
        thumbnail=thumbnail,
        phases=np.array([spectrum_phases(fine_detail(view)) for view in thumbnail_views], np.uint8).reshape(
            len(thumbnail_views), THUMBNAIL_SIDE, THUMBNAIL_SIDE // 2 + 1),
        correlation_zooms=CORRELATION_ZOOMS,
    )
