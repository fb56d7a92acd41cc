"""What verifying a pair records: which stage decided, why a rejected pair was rejected, and what was measured."""

import enum
import math
from dataclasses import dataclass

import numpy as np


class Stage(enum.StrEnum):
    """The stages of the cascade (`tasks.verify.cascade.verify_pair`), in the order a pair meets them."""

    FEATURES = "features"  # decoding each image and extracting its features
    KEYPOINTS = "keypoints"  # ORB keypoints at the working size and a RANSAC fit
    CORRELATION = "correlation"  # phase correlation of thumbnails, the every-shift search and the median cell
    FINE_KEYPOINTS = "fine_keypoints"  # keypoints of a larger working image, for doubtful pairs only


class Reason(enum.StrEnum):
    """Why the stage that decided rejected a pair."""

    UNREADABLE = "unreadable"  # an image cannot be decoded
    TOO_FEW_KEYPOINTS = "too_few_keypoints"  # an image has fewer keypoints than `min_inliers` (the other: 2)
    TOO_FEW_MATCHES = "too_few_matches"  # fewer one-to-one ratio-test matches than `min_inliers`
    NO_FIT = "no_fit"  # RANSAC found no transform
    SCALE_CHANGE = "scale_change"  # the fit shrinks or grows the content beyond any plausible resize
    TOO_FEW_INLIERS = "too_few_inliers"  # fewer inliers than `min_inliers`
    LOW_INLIER_RATIO = "low_inlier_ratio"  # a smaller share of the matches fits than `min_inlier_ratio`
    SMALL_OVERLAP = "small_overlap"  # the shared region covers less than `overlap_min_coverage` of either image
    DETAIL_DISAGREES = "detail_disagrees"  # aligned, the fine detail away from the evidence does not correlate
    TOO_SMALL = "too_small"  # an image is too small to correlate
    NO_CORRELATION_PEAK = "no_correlation_peak"  # no placement was worth checking: no peak, no distinct shift
    LOW_CORRELATION = "low_correlation"  # the best placement's overlap correlates below `min_correlation`
    LOW_MEDIAN_CELL = "low_median_cell"  # a strongly peaked placement whose median cell correlates too weakly


@dataclass(frozen=True)
class Verification:
    """Outcome of verifying one pair.

    `stage`: the `Stage` that decided: the one that accepted the pair, or the last one that rejected it.
    `evidence`: the check that accepted the pair (a `tasks.schema.Check`), or "" when none did. `reason`: for a
    rejection, a `Reason`; "" for an acceptance. `inlier_ratio`: the share of one-to-one ratio-test matches that are
    geometric inliers of a keypoint fit, NaN when no fit was made. `correlation`: the normalised cross-correlation
    of the thumbnails' detail that accepted a placement (for a `median_cell` match, its median cell's), or the best
    one measured for a rejection; NaN when none was measured. `inliers`: number of keypoint inliers. `transform`: how
    b relates to a, '+'-joined from same, hflip, vflip, rotate90/rotate180/rotate270 (clockwise), rotate (other
    angle), rescale, crop (one image lies within the other), shift (neither does), and zoom<factor>x (a correlation
    match at that scale, e.g. zoom2x: b shows a's ground twice as large; zoom0.5x: the other way); empty for a
    rejected pair. `share_a`, `share_b`: the share of each image's area that shows ground the other shows too, under
    the accepted map (for a rejected keypoint fit, under its fit). `a_to_b`: that map, 3 x 3 from a's unit square
    to b's (`tasks.geometry`); None when rejected.
    """

    stage: Stage
    evidence: str = ""
    reason: str = ""
    inlier_ratio: float = math.nan
    correlation: float = math.nan
    inliers: int = 0
    transform: str = ""
    share_a: float = 0.0
    share_b: float = 0.0
    a_to_b: np.ndarray | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.evidence)


# The verdict on a pair with an image that cannot be decoded.
UNREADABLE = Verification(stage=Stage.FEATURES, reason=Reason.UNREADABLE)
