"""The manifest schema: column names, types, the issue and action vocabularies, and the Parquet metadata.

This module is the single owner of the manifest's shape. Other modules refer to columns through `Col` and to
issues through `Issue`, never through string literals of their own.
"""

import enum
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class Issue(enum.StrEnum):
    """Every issue Curate can report for a file. The string values are the manifest's vocabulary."""

    EXACT_DUPLICATE = "exact_duplicate"  # same bytes as another file
    IDENTICAL = "identical"  # a neighbour with similarity above the `identical` band
    NEAR_IDENTICAL = "near_identical"  # a neighbour in the `near_identical` band
    SIMILAR = "similar"  # a neighbour in the `similar` band (reported, not acted on)
    NEAR_DUPLICATE = "near_duplicate"  # a `duplicate` relation: the same picture, whatever the transform
    OVERLAP = "overlap"  # an `overlap` relation: shares part of its ground with another image
    OUTLIER = "outlier"  # out of domain: far from every other image
    BLURRY = "blurry"
    DARK = "dark"
    BRIGHT = "bright"
    CORRUPT = "corrupt"  # cannot be decoded
    SPLIT_LEAK = "split_leak"  # it shares ground (any relation) with a file of another split
    LABEL_CONFLICT = "label_conflict"  # its duplicate set holds different labels


class Action(enum.StrEnum):
    KEEP = "keep"
    DROP = "drop"
    REVIEW = "review"  # a person decides


class Relation(enum.StrEnum):
    """How two images share ground: a measured fact, recorded in `pairs.parquet`. Whether one is dropped is a
    decision taken from it (`tasks.decisions`)."""

    EXACT = "exact"  # the same bytes
    DUPLICATE = "duplicate"  # the ground they share covers at least decisions.duplicate_share of each image
    OVERLAP = "overlap"  # they share less


class Check(enum.StrEnum):
    """The check that accepted a pair: the `evidence` of a relation."""

    SHA256 = "sha256"  # identical bytes; never verified
    KEYPOINTS = "keypoints"  # ORB keypoints and a RANSAC fit at the working size
    FINE_KEYPOINTS = "fine_keypoints"  # the same on finer keypoints of a larger working image (second pass)
    PHASE_CORRELATION = "phase_correlation"  # a placement proposed by phase correlation of thumbnails
    SHIFT_SEARCH = "shift_search"  # a placement found by searching every shift (a thin strip)
    MEDIAN_CELL = "median_cell"  # a strongly peaked placement whose median grid cell correlates
    COMPOSITION = "composition"  # two verified relations through a third file, composed: ground too thin to verify


class Band(enum.StrEnum):
    """Similarity levels of a neighbour pair, strongest first (thresholds in the configuration)."""

    IDENTICAL = "identical"
    NEAR_IDENTICAL = "near_identical"
    SIMILAR = "similar"


class Col:
    """Manifest column names."""

    ROW = "row"  # position of the file in ingest order; stable within one run
    PATH = "path"
    SPLIT = "split"
    CURATED_SPLIT = "curated_split"  # the split the file is written to (decisions.split_leak: reassign moves some)
    LABEL = "label"
    SHA256 = "sha256"
    BYTES = "bytes"
    WIDTH = "width"
    HEIGHT = "height"
    FORMAT = "format"
    VALID = "valid"
    ERROR = "error"
    BLUR = "blur"
    BRIGHTNESS = "brightness"
    CONTRAST = "contrast"
    SHARPNESS = "sharpness"
    FINE_DETAIL = "fine_detail"
    BLACK_LEVEL = "black_level"
    NN_PATH = "nn_path"
    NN_SIMILARITY = "nn_similarity"
    DENSITY_RATIO = "density_ratio"
    MATCH_PATH = "match_path"
    MATCH_SCORE = "match_score"  # the best relation's evidence score: `tasks.relations.evidence_score`
    MATCH_TRANSFORM = "match_transform"
    DUP_GROUP = "dup_group"
    CLUSTER = "cluster"
    ISSUES = "issues"
    ACTION = "action"
    REASON = "reason"
    DUPLICATE_OF = "duplicate_of"
    LEAKS_INTO = "leaks_into"


MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(Col.PATH, pa.string(), nullable=False),
        pa.field(Col.SPLIT, pa.string(), nullable=False),
        pa.field(Col.CURATED_SPLIT, pa.string(), nullable=False),
        pa.field(Col.LABEL, pa.string()),
        pa.field(Col.SHA256, pa.string()),
        pa.field(Col.BYTES, pa.int64()),
        pa.field(Col.WIDTH, pa.int32()),
        pa.field(Col.HEIGHT, pa.int32()),
        pa.field(Col.FORMAT, pa.string()),
        pa.field(Col.VALID, pa.bool_(), nullable=False),
        pa.field(Col.ERROR, pa.string()),
        pa.field(Col.BLUR, pa.float64()),
        pa.field(Col.BRIGHTNESS, pa.float64()),
        pa.field(Col.CONTRAST, pa.float64()),
        pa.field(Col.SHARPNESS, pa.float64()),
        pa.field(Col.FINE_DETAIL, pa.float64()),
        pa.field(Col.BLACK_LEVEL, pa.float64()),
        pa.field(Col.NN_PATH, pa.string()),
        pa.field(Col.NN_SIMILARITY, pa.float64()),
        pa.field(Col.DENSITY_RATIO, pa.float64()),
        pa.field(Col.MATCH_PATH, pa.string()),
        pa.field(Col.MATCH_SCORE, pa.float64()),
        pa.field(Col.MATCH_TRANSFORM, pa.string()),
        pa.field(Col.DUP_GROUP, pa.int64()),
        pa.field(Col.CLUSTER, pa.int64()),
        pa.field(Col.ISSUES, pa.list_(pa.string()), nullable=False),
        pa.field(Col.ACTION, pa.string(), nullable=False),
        pa.field(Col.REASON, pa.string(), nullable=False),
        pa.field(Col.DUPLICATE_OF, pa.string()),
        pa.field(Col.LEAKS_INTO, pa.string()),
    ]
)

MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST_SCHEMA.names)


class PairCol:
    """Column names of `pairs.parquet` (one row per related pair) and of the relations frame behind it, which
    names its two files by manifest row (`ROW_A`, `ROW_B`, with row_a < row_b) instead of by path."""

    ROW_A = "row_a"
    ROW_B = "row_b"
    PATH_A = "path_a"
    PATH_B = "path_b"
    RELATION = "relation"
    SHARE_A = "share_a"  # share of a's area showing ground that b shows too
    SHARE_B = "share_b"
    TRANSFORM = "transform"  # how b relates to a
    INLIER_RATIO = "inlier_ratio"  # share of a keypoint fit's one-to-one matches that are inliers; NaN if none
    CORRELATION = "correlation"  # normalised cross-correlation that accepted a placement; NaN if none
    EVIDENCE = "evidence"  # the `Check` that accepted the pair
    CROSS_SPLIT = "cross_split"
    A_TO_B = "a_to_b"  # 3 x 3 map, row-major, from a's unit square to b's (x / width, y / height)


class MatchCol:
    """Column names of the frames of pairs on their way to relations, each pair's two files by manifest row
    (`ROW_A` < `ROW_B`): the neighbour pairs similarity finds (with `SIMILARITY`, and `RANK` when ranked per image),
    the candidates verification takes (with `COLOUR_SIMILARITY`, and `PATH_A`, `PATH_B` while verified) and the
    verified pairs it returns, with the fields of a `tasks.verify.Verification`. Names shared with `PairCol` are
    its names: the verified pairs become relations."""

    ROW_A, ROW_B = PairCol.ROW_A, PairCol.ROW_B
    PATH_A, PATH_B = PairCol.PATH_A, PairCol.PATH_B
    SIMILARITY = "similarity"  # cosine similarity of the two embeddings
    RANK = "rank"  # 0 for an image's nearest neighbour
    COLOUR_SIMILARITY = "colour_similarity"  # cosine similarity of the two colour signatures
    STAGE = "stage"  # the verification stage that decided
    EVIDENCE = PairCol.EVIDENCE  # "" for a rejected pair
    REASON = "reason"  # why a rejected pair was rejected; "" for an accepted one
    INLIER_RATIO, CORRELATION = PairCol.INLIER_RATIO, PairCol.CORRELATION
    INLIERS = "inliers"  # keypoint inliers
    TRANSFORM = PairCol.TRANSFORM
    SHARE_A, SHARE_B = PairCol.SHARE_A, PairCol.SHARE_B
    A_TO_B = PairCol.A_TO_B


PAIRS_SCHEMA = pa.schema(
    [
        pa.field(PairCol.PATH_A, pa.string(), nullable=False),
        pa.field(PairCol.PATH_B, pa.string(), nullable=False),
        pa.field(PairCol.RELATION, pa.string(), nullable=False),
        pa.field(PairCol.SHARE_A, pa.float64(), nullable=False),
        pa.field(PairCol.SHARE_B, pa.float64(), nullable=False),
        pa.field(PairCol.TRANSFORM, pa.string(), nullable=False),
        pa.field(PairCol.INLIER_RATIO, pa.float64()),
        pa.field(PairCol.CORRELATION, pa.float64()),
        pa.field(PairCol.EVIDENCE, pa.string(), nullable=False),
        pa.field(PairCol.CROSS_SPLIT, pa.bool_(), nullable=False),
        pa.field(PairCol.A_TO_B, pa.list_(pa.float64(), 9), nullable=False),
    ]
)

PAIRS_COLUMNS: tuple[str, ...] = tuple(PAIRS_SCHEMA.names)
METADATA_KEY = b"curate"


def to_table(manifest: pd.DataFrame, metadata: dict[str, Any]) -> pa.Table:
    """Convert a manifest frame to an Arrow table with the contract schema and Curate's metadata attached."""
    table = pa.Table.from_pandas(manifest[list(MANIFEST_COLUMNS)], schema=MANIFEST_SCHEMA, preserve_index=False)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str).encode()})


def pairs_to_table(pairs: pd.DataFrame) -> pa.Table:
    """Convert a frame of related pairs (`PAIRS_COLUMNS`; `a_to_b` holding 9 numbers a row) to an Arrow table with
    the contract schema."""
    maps = pairs[PairCol.A_TO_B].to_numpy()
    flat = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps]) if len(maps) else np.empty(0)
    columns = [pa.array(pairs[name].to_numpy(), type=field.type, from_pandas=True)
               if name != PairCol.A_TO_B else pa.FixedSizeListArray.from_arrays(pa.array(flat), 9)
               for name, field in zip(PAIRS_COLUMNS, PAIRS_SCHEMA)]
    return pa.Table.from_arrays(columns, schema=PAIRS_SCHEMA)


def issue_flags(issues: pd.Series) -> pd.DataFrame:
    """One boolean column per issue of the vocabulary (in its order): whether each row's list of issues holds it.

    `issues` is a manifest's `issues` column (lists, or arrays when read back from Parquet). The lists go through
    Arrow once instead of a Python test per row and issue: a million rows take milliseconds."""
    lists = pa.array(issues.to_numpy(dtype=object), type=pa.list_(pa.string()))
    names = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    owners = pc.list_parent_indices(lists).to_numpy()
    flags = {}
    for issue in Issue:
        hit = np.zeros(len(issues), dtype=bool)
        hit[owners[names == issue.value]] = True
        flags[issue.value] = hit
    return pd.DataFrame(flags, index=issues.index)


def read_metadata(schema: pa.Schema) -> dict[str, Any]:
    """Return the Curate metadata (configuration, versions, run time) stored in a manifest's Parquet schema."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
