"""Geometric verification of candidate image pairs: which of them show the same ground, and how much of it.

Embedding similarity ranks candidates but cannot tell a crop, rotation or overlapping tile from a different scene
of the same texture. The stages, each a module with its tuning constants at the top (the measurements behind them
in docs/VERIFICATION.md):

- `candidates`: the pairs worth verifying (nearest neighbours by embedding, colour, part colours, structure, name);
- `features`: each image's ORB keypoints (and mirrored ones) and thumbnail, computed once per image;
- `keypoints`: ratio-test matches and a RANSAC similarity fit, judged;
- `correlation` and `placements`: phase correlation of thumbnails, shifted and zoomed, and the every-shift search
  for thin strips, for pairs the keypoints reject;
- `agreement`: every match confirmed on the fine detail its evidence did not use;
- `cascade`: `verify_pair`, the order of the stages for one pair;
- `runner`: many pairs on threads with features kept per process, and the flow's stage `verify_candidates`, which
  caches verdicts by content.

Every verdict (`Verification`) records the stage that decided and, for a rejection, a `Reason`.
"""

from tasks.verify.candidates import (
    grid_neighbours, name_neighbours, part_neighbours, select_candidates, signature_neighbours, structure_neighbours,
)
from tasks.verify.cascade import verify_pair
from tasks.verify.correlation import correlate_pair
from tasks.verify.features import FINE, WORKING, ImageFeatures, Resolution, extract_features
from tasks.verify.runner import (
    FEATURE_CACHE, METHOD_VERSION, RESULT_COLUMNS, FeatureCache, chunks_by_locality, verify_candidates, verify_pairs,
)
from tasks.verify.verdict import Reason, Stage, Verification

__all__ = [
    "FEATURE_CACHE", "FINE", "METHOD_VERSION",
    "RESULT_COLUMNS", "WORKING", "FeatureCache", "ImageFeatures", "Reason",
    "Resolution", "Stage", "Verification", "chunks_by_locality", "correlate_pair", "extract_features",
    "grid_neighbours", "name_neighbours", "part_neighbours", "select_candidates", "signature_neighbours",
    "structure_neighbours", "verify_candidates", "verify_pair", "verify_pairs",
]
