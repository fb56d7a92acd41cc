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
    NEAR_DUPLICATE = "near_duplicate"  # verified: the same scene re-encoded, rescaled, cropped, mirrored or rotated
    OVERLAP = "overlap"  # verified: shares part of its scene with another tile
    OUTLIER = "outlier"  # out of domain: far from every other image
    BLURRY = "blurry"
    DARK = "dark"
    BRIGHT = "bright"
    CORRUPT = "corrupt"  # cannot be decoded
    SPLIT_LEAK = "split_leak"  # its duplicate group spans more than one split
    LABEL_CONFLICT = "label_conflict"  # its duplicate group holds different labels


class Action(enum.StrEnum):
    KEEP = "keep"
    DROP = "drop"
    REVIEW = "review"  # a person decides


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
    MATCH_SCORE = "match_score"
    MATCH_TRANSFORM = "match_transform"
    DUP_GROUP = "dup_group"
    CLUSTER = "cluster"
    ISSUES = "issues"
    ACTION = "action"
    REASON = "reason"
    DUPLICATE_OF = "duplicate_of"


MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(Col.PATH, pa.string(), nullable=False),
        pa.field(Col.SPLIT, pa.string(), nullable=False),
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
    ]
)

MANIFEST_COLUMNS: tuple[str, ...] = tuple(MANIFEST_SCHEMA.names)
METADATA_KEY = b"curate"


def to_table(manifest: pd.DataFrame, metadata: dict[str, Any]) -> pa.Table:
    """Convert a manifest frame to an Arrow table with the contract schema and Curate's metadata attached."""
    table = pa.Table.from_pandas(manifest[list(MANIFEST_COLUMNS)], schema=MANIFEST_SCHEMA, preserve_index=False)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str).encode()})


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
