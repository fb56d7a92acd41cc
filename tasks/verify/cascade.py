"""The cascade that decides one pair: keypoints, then correlation, then finer keypoints for doubtful pairs.

Measurements behind the constants: docs/VERIFICATION.md, "The cascade".
"""

from collections.abc import Callable

from tasks.config import VerificationConfig
from tasks.verify.correlation import SECOND_LOOK_PEAK, correlate
from tasks.verify.features import FINE, ImageFeatures, extract_features
from tasks.verify.keypoints import match_keypoints
from tasks.verify.verdict import UNREADABLE, Stage, Verification

# A pair both stages reject gets the finer keypoint pass when its keypoints still fit this many inliers (or when a
# correlation surface peaked at `SECOND_LOOK_PEAK`): a cropped and rotated copy with 4 inliers at 200 px needs it.
REFINE_MIN_INLIERS: int = 4

# Gives the fine-resolution features of an image whose working features are given; None if it cannot be read.
FineFeatures = Callable[[ImageFeatures], ImageFeatures | None]


def extract_fine(features: ImageFeatures) -> ImageFeatures | None:
    """The image's features at the fine resolution, extracted again from its file."""
    return extract_features(features.path, FINE)


def verify_pair(a: ImageFeatures, b: ImageFeatures, config: VerificationConfig = VerificationConfig(),
                fine_features: FineFeatures = extract_fine) -> Verification:
    """Decide whether `a` and `b` (working-resolution features) show the same ground, part of it, or not.

    Keypoints are matched first (directly, then mirrored), which settles copies cheaply; only a pair they reject is
    correlated. A pair both reject that still looks doubtful (`worth_refining`) is matched again on the finer
    keypoints of both images (`fine_features`), from each image to the other. Matches are searched from a to b, so
    `transform` and the scores describe b relative to a; swapping the pair can change the counts slightly near the
    thresholds. A rejection is the last stage's, with its reason.
    """
    keypoints = match_keypoints(a, b, config)
    if keypoints.accepted:
        return keypoints
    correlated, peak = correlate(a, b, config)
    if correlated.accepted or not worth_refining(keypoints, peak, a, b):
        return correlated
    fine_a, fine_b = fine_features(a), fine_features(b)
    if fine_a is None or fine_b is None:
        return UNREADABLE
    return match_keypoints(fine_a, fine_b, config, Stage.FINE_KEYPOINTS, both_ways=True)


def worth_refining(keypoints: Verification, peak: float, a: ImageFeatures, b: ImageFeatures) -> bool:
    """Whether a pair both stages rejected is worth the finer keypoint pass: the keypoints found
    `REFINE_MIN_INLIERS` consistent matches, or a correlation surface peaked at `SECOND_LOOK_PEAK` (shared structure
    the thumbnails' correlation could not confirm, such as fine furrows); unrelated pairs rarely show either, so
    the finer pass stays a small share of the time. Not when both images were enlarged for their keypoints: the
    finer pass would only find more corners on the same interpolated pixels (on 1,400 tiles of 64 pixels it linked
    3 pairs of different tiles; on images of 128 or 200 pixels, its extra keypoints do find heavy crops that the
    first pass misses)."""
    doubtful = keypoints.inliers >= REFINE_MIN_INLIERS or peak >= SECOND_LOOK_PEAK
    return doubtful and not (a.enlarged and b.enlarged)
