"""Classification: from ingest rows, similarity pairs and statistics to issues, duplicate groups and actions.

Each issue type has one detector, registered in `DETECTORS`; the issue vocabulary itself lives in
`tasks.schema.Issue`, and a check at import time fails if an issue has no detector (or two).

Duplicate groups are the connected components of exact (same sha256) pairs and of pairs that geometric
verification found to show the same scene (duplicates) or part of it (overlaps). Similarity bands are reported.
Exactly one member of each group is kept, chosen by `choose_keepers` (the rule is in the README).
"""

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tasks.config import CurateConfig
from tasks.imagestats import robust_z
from tasks.overrides import apply_overrides
from tasks.schema import Action, Band, Col, Issue
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, Similarity, both_sides, neighbours_by_row
from tasks.verify import DUPLICATE, MATCH_SCORE, OVERLAP, RELATION, TRANSFORM

ENGINE_ERROR = "engine_error"  # why the similarity engine could not read a file Pillow decodes (evidence only)

@dataclass(frozen=True)
class Evidence:
    """Everything detectors may look at. `files` is indexed by row and already holds statistics,
    nearest neighbours, best verified matches and duplicate groups; `matches` holds the verified duplicate and
    overlap pairs."""

    files: pd.DataFrame
    matches: pd.DataFrame  # verified pairs (row_a, row_b, relation, match_score, transform, ...)
    config: CurateConfig
    # Values several detectors share (anomaly strengths, similarity bands), computed once per evidence.
    computed: dict[str, pd.DataFrame | pd.Series] = field(default_factory=dict, compare=False, repr=False)


Detector = Callable[[Evidence], pd.Series]
DETECTORS: dict[Issue, Detector] = {}


def detector(issue: Issue) -> Callable[[Detector], Detector]:
    """Register the detector of one issue type; registering an issue twice is an error."""

    def register(function: Detector) -> Detector:
        if issue in DETECTORS:
            raise ValueError(f"issue {issue} already has a detector: {DETECTORS[issue].__name__}")
        DETECTORS[issue] = function
        return function

    return register


def band_of(similarity: pd.Series, config: CurateConfig) -> pd.Series:
    """Similarity band of each pair (None below the `similar` band); bands are exclusive lower bounds."""
    bands = config.bands
    conditions = [similarity > bands.identical, similarity > bands.near_identical, similarity > bands.similar]
    labels = np.select(conditions, [Band.IDENTICAL.value, Band.NEAR_IDENTICAL.value, Band.SIMILAR.value], default="")
    return pd.Series(labels, index=similarity.index, dtype="string").replace("", pd.NA)


def connected_groups(n_rows: int, row_a: np.ndarray, row_b: np.ndarray) -> np.ndarray:
    """Component id per row for the graph of the given edges; rows without an edge get -1.

    Ids are numbered 0.. in order of each component's first row, so they do not depend on edge order.
    """
    groups = np.full(n_rows, -1, dtype=np.int64)
    if len(row_a) == 0:
        return groups
    graph = coo_matrix((np.ones(len(row_a), dtype=np.int8), (row_a, row_b)), shape=(n_rows, n_rows))
    _, labels = connected_components(graph, directed=False)
    members = np.flatnonzero(np.bincount(labels)[labels] > 1)  # ascending rows
    member_labels = labels[members]
    components, first = np.unique(member_labels, return_index=True)
    # Renumber by each component's first row so ids do not depend on how scipy numbered the components.
    rank = np.empty(len(components), dtype=np.int64)
    rank[np.argsort(members[first], kind="stable")] = np.arange(len(components))
    groups[members] = rank[np.searchsorted(components, member_labels)]
    return groups


def _exact_duplicate_edges(files: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking each readable file to the first file with the same sha256 (a star per hash)."""
    readable = files.loc[files[Col.VALID], [Col.ROW, Col.SHA256]]
    readable = readable[readable[Col.SHA256].duplicated(keep=False)]  # grouping only these is much faster
    first = readable.groupby(Col.SHA256)[Col.ROW].transform("min")
    linked = readable[readable[Col.ROW] != first]
    return linked[Col.ROW].to_numpy(dtype=np.int64), first[linked.index].to_numpy(dtype=np.int64)


def _density_ratio(neighbours: pd.DataFrame, k: int) -> pd.Series:
    """Mean similarity of each row to its k nearest neighbours, divided by the same mean of those neighbours.

    About 1 where an image sits as densely as its neighbours; well below 1 for an image far from a dataset
    whose other images are close to each other: a local-outlier-factor, so a sparse class is not flagged.
    `neighbours` as `tasks.similarity.neighbours_by_row` returns them."""
    nearest = neighbours[neighbours["rank"].to_numpy() < k]
    own = nearest.groupby("row")[SIMILARITY].mean()
    theirs = own.reindex(nearest["other"].to_numpy()).to_numpy()
    return own / pd.Series(theirs, index=nearest["row"].to_numpy()).groupby(level=0).mean()


def _nearest_neighbours(files: pd.DataFrame, neighbours: pd.DataFrame) -> pd.DataFrame:
    """Each row's most similar neighbour among its recorded pairs (ties broken by the smaller row)."""
    best = neighbours[neighbours["rank"].to_numpy() == 0]
    paths = files[Col.PATH]
    return pd.DataFrame(
        {
            Col.NN_PATH: paths.reindex(best["other"].to_numpy()).to_numpy(),
            Col.NN_SIMILARITY: best[SIMILARITY].to_numpy(),
        },
        index=pd.Index(best["row"].to_numpy(), name="row"),
    )


def _best_matches(frame: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """Each row's strongest verified match: a duplicate before an overlap, then the higher match score."""
    both = both_sides(matches)
    both = both.assign(is_overlap=both[RELATION] == OVERLAP)
    best = both.sort_values(["row", "is_overlap", MATCH_SCORE, "other"], ascending=[True, True, False, True])
    best = best.drop_duplicates("row").set_index("row")
    return pd.DataFrame(
        {
            Col.MATCH_PATH: frame[Col.PATH].reindex(best["other"].to_numpy()).to_numpy(),
            Col.MATCH_SCORE: best[MATCH_SCORE].astype("float64").to_numpy(),
            Col.MATCH_TRANSFORM: best[TRANSFORM].to_numpy(),
        },
        index=best.index,
    )


def build_evidence(
    files: pd.DataFrame, similarity: Similarity, matches: pd.DataFrame, config: CurateConfig
) -> Evidence:
    """Join ingest rows with nearest neighbours, verified matches, pair bands, clusters and duplicate groups."""
    frame = files.set_index(Col.ROW, drop=False).sort_index()
    frame[ENGINE_ERROR] = pd.Series(similarity.unanalysed, dtype="string").reindex(frame.index)

    pairs = similarity.pairs
    neighbours = neighbours_by_row(pairs)
    nearest = _nearest_neighbours(frame, neighbours)
    frame[Col.DENSITY_RATIO] = _density_ratio(neighbours, config.similarity.nearest_neighbors).reindex(frame.index)
    frame[Col.NN_PATH] = nearest[Col.NN_PATH].reindex(frame.index).astype("string")
    frame[Col.NN_SIMILARITY] = nearest[Col.NN_SIMILARITY].reindex(frame.index).astype("float64")

    n_rows = len(frame)
    linked = pairs[pairs[SIMILARITY] >= config.similarity.cluster_similarity]
    clusters = connected_groups(n_rows, linked[PAIR_A].to_numpy(), linked[PAIR_B].to_numpy())
    frame[Col.CLUSTER] = pd.array(np.where(clusters >= 0, clusters, None), dtype="Int64")

    best = _best_matches(frame, matches)
    for column, dtype in ((Col.MATCH_PATH, "string"), (Col.MATCH_SCORE, "float64"), (Col.MATCH_TRANSFORM, "string")):
        frame[column] = best[column].reindex(frame.index).astype(dtype)

    # Groups come from verified matches (duplicates and overlaps) and identical bytes, never from a similarity
    # threshold alone: similarity ranks candidates, verification decides.
    exact_a, exact_b = _exact_duplicate_edges(frame)
    groups = connected_groups(
        n_rows,
        np.concatenate([matches[PAIR_A].to_numpy(dtype=np.int64), exact_a]),
        np.concatenate([matches[PAIR_B].to_numpy(dtype=np.int64), exact_b]),
    )
    frame[Col.DUP_GROUP] = pd.array(np.where(groups >= 0, groups, None), dtype="Int64")
    return Evidence(files=frame, matches=matches, config=config)


def _rows_in_band(evidence: Evidence, band: Band) -> pd.Series:
    """Rows whose strongest pair (their nearest neighbour) falls in `band`: each image is reported in its
    strongest band only."""
    if "nn_band" not in evidence.computed:
        evidence.computed["nn_band"] = band_of(evidence.files[Col.NN_SIMILARITY], evidence.config)
    return (evidence.computed["nn_band"] == band.value).fillna(False).astype(bool)


def _group_has_many(evidence: Evidence, column: str) -> pd.Series:
    """Rows whose duplicate group holds more than one distinct non-null value of `column`."""
    files = evidence.files
    grouped = files.loc[files[Col.DUP_GROUP].notna(), [Col.DUP_GROUP, column]]
    distinct = grouped.groupby(Col.DUP_GROUP)[column].nunique(dropna=True)
    many = distinct[distinct > 1].index
    return files[Col.DUP_GROUP].isin(many).fillna(False).astype(bool)


@detector(Issue.CORRUPT)
def _corrupt(evidence: Evidence) -> pd.Series:
    return ~evidence.files[Col.VALID]


@detector(Issue.EXACT_DUPLICATE)
def _exact_duplicate(evidence: Evidence) -> pd.Series:
    files = evidence.files
    readable = files[Col.VALID]
    return readable & files[Col.SHA256].where(readable).duplicated(keep=False) & files[Col.SHA256].notna()


@detector(Issue.IDENTICAL)
def _identical(evidence: Evidence) -> pd.Series:
    return _rows_in_band(evidence, Band.IDENTICAL)


@detector(Issue.NEAR_IDENTICAL)
def _near_identical(evidence: Evidence) -> pd.Series:
    return _rows_in_band(evidence, Band.NEAR_IDENTICAL)


@detector(Issue.SIMILAR)
def _similar(evidence: Evidence) -> pd.Series:
    return _rows_in_band(evidence, Band.SIMILAR)


def _strength(values: pd.Series, min_spread: float, threshold: float) -> pd.Series:
    """How far below the dataset's median a value lies, in robust standard deviations, as a multiple of
    `threshold` (> 1 = beyond it)."""
    return (-robust_z(values, min_spread=min_spread) / threshold).fillna(0.0)


def anomaly_strengths(evidence: Evidence) -> pd.DataFrame:
    """How far each image lies beyond the threshold of each anomaly, as a multiple of it (> 1 = beyond).

    All are robust z-scores against this dataset. Blurry needs both a low contrast-normalised sharpness (a soft
    but well-exposed scene is not blurry) and a low Laplacian variance (a dim or flat but sharp image is not
    blurry), or little fine detail in some direction (a smear); dark uses log brightness; bright the log distance
    from white of the black level (washed out) or of the mean (over-exposed: most of the image near white, though
    its shadows remain); outlier the density ratio."""
    if "anomaly_strengths" in evidence.computed:
        return evidence.computed["anomaly_strengths"]
    files, quality = evidence.files, evidence.config.quality
    strengths = evidence.computed["anomaly_strengths"] = pd.DataFrame(
        {
            Issue.BLURRY.value: np.maximum(
                np.minimum(
                    _strength(files[Col.SHARPNESS], 0.1, quality.blurry_z),
                    _strength(np.log1p(files[Col.BLUR]), 0.1, quality.blurry_z),
                ),
                _strength(files[Col.FINE_DETAIL], 0.02, quality.blurry_fine_detail_z),
            ),
            Issue.DARK.value: _strength(np.log1p(files[Col.BRIGHTNESS]), 0.05, quality.dark_z),
            Issue.BRIGHT.value: np.maximum(
                _strength(np.log(256.0 - files[Col.BLACK_LEVEL]), 0.05, quality.bright_z),
                _strength(np.log(256.0 - files[Col.BRIGHTNESS]), 0.05, quality.bright_mean_z),
            ),
            Issue.OUTLIER.value: _strength(files[Col.DENSITY_RATIO], 0.01, quality.outlier_z),
        }
    )
    return strengths


def _anomaly(evidence: Evidence, issue: Issue) -> pd.Series:
    """An image beyond an anomaly's threshold gets the issue that explains it best: a blurred, dark or washed-out
    aerial tile also looks unlike its neighbours, and an out-of-domain photo is often smooth or dim compared with
    aerial tiles, so the stronger of the two explanations wins (quality issues may combine)."""
    strengths = anomaly_strengths(evidence)
    quality = strengths.drop(columns=Issue.OUTLIER.value).max(axis=1)
    outlier = (strengths[Issue.OUTLIER.value] > 1.0) & (strengths[Issue.OUTLIER.value] >= quality)
    if issue is Issue.OUTLIER:
        return outlier
    return (strengths[issue.value] > 1.0) & ~outlier


def _rows_matched(evidence: Evidence, relation: str) -> pd.Series:
    matches = evidence.matches[evidence.matches[RELATION] == relation]
    rows = pd.concat([matches[PAIR_A], matches[PAIR_B]])
    return evidence.files.index.to_series().isin(rows)


@detector(Issue.NEAR_DUPLICATE)
def _near_duplicate(evidence: Evidence) -> pd.Series:
    return _rows_matched(evidence, DUPLICATE)


@detector(Issue.OVERLAP)
def _overlap(evidence: Evidence) -> pd.Series:
    return _rows_matched(evidence, OVERLAP)


@detector(Issue.OUTLIER)
def _outlier(evidence: Evidence) -> pd.Series:
    return _anomaly(evidence, Issue.OUTLIER)


@detector(Issue.BLURRY)
def _blurry(evidence: Evidence) -> pd.Series:
    return _anomaly(evidence, Issue.BLURRY)


@detector(Issue.DARK)
def _dark(evidence: Evidence) -> pd.Series:
    return _anomaly(evidence, Issue.DARK)


@detector(Issue.BRIGHT)
def _bright(evidence: Evidence) -> pd.Series:
    return _anomaly(evidence, Issue.BRIGHT)


@detector(Issue.SPLIT_LEAK)
def _split_leak(evidence: Evidence) -> pd.Series:
    return _group_has_many(evidence, Col.SPLIT)


@detector(Issue.LABEL_CONFLICT)
def _label_conflict(evidence: Evidence) -> pd.Series:
    return _group_has_many(evidence, Col.LABEL)


_missing = set(Issue) - set(DETECTORS)
if _missing:
    raise RuntimeError(f"issues without a detector: {sorted(_missing)}")


def detect_issues(evidence: Evidence) -> pd.DataFrame:
    """One boolean column per issue, in vocabulary order."""
    flags = {issue.value: DETECTORS[issue](evidence).reindex(evidence.files.index).astype(bool) for issue in Issue}
    return pd.DataFrame(flags, index=evidence.files.index)


def choose_keepers(evidence: Evidence, flags: pd.DataFrame) -> pd.Series:
    """Row of the kept member of each duplicate group (index: group id). In order of preference: a file without
    a dropped quality issue; an evaluation split (decisions.evaluation_splits, in their order); labeled over
    unlabeled; more pixels; more bytes; then the first path in sort order."""
    files = evidence.files
    members = files.iloc[np.flatnonzero(files[Col.DUP_GROUP].notna().to_numpy(dtype=bool))]
    dropped_issues = [issue.value for issue in evidence.config.decisions.drop]
    evaluation_rank = {split: rank for rank, split in enumerate(evidence.config.decisions.evaluation_splits)}
    keys = pd.DataFrame(
        {
            "group": members[Col.DUP_GROUP],
            "flagged": flags.loc[members.index, dropped_issues].any(axis=1),
            "split_rank": members[Col.SPLIT].map(lambda split: evaluation_rank.get(split, len(evaluation_rank))),
            "unlabeled": members[Col.LABEL].isna(),
            "pixels": -(members[Col.WIDTH].astype("float64") * members[Col.HEIGHT].astype("float64")),
            "bytes": -members[Col.BYTES].astype("float64"),
            "path": members[Col.PATH],
            "row": members.index,
        }
    )
    ordered = keys.sort_values(["group", "flagged", "split_rank", "unlabeled", "pixels", "bytes", "path"])
    return ordered.drop_duplicates("group").set_index("group")["row"]


def _issue_text(flags: pd.DataFrame, chosen: frozenset[Issue]) -> pd.Series:
    """Comma-separated names of the chosen issues each row has, in vocabulary order."""
    text = pd.Series("", index=flags.index, dtype="string")
    for issue in Issue:
        if issue in chosen:
            text = text + np.where(flags[issue.value], issue.value + ", ", "")
    return text.str.removesuffix(", ")


def decide(evidence: Evidence, flags: pd.DataFrame) -> pd.DataFrame:
    """Action, reason and duplicate_of for every row: corrupt > duplicate > dropped issue > review > keep."""
    files = evidence.files
    decisions = evidence.config.decisions
    keepers = choose_keepers(evidence, flags)
    keeper_row = files[Col.DUP_GROUP].map(keepers).astype("Int64")
    is_copy = (keeper_row.notna() & (keeper_row != files.index.to_series())).fillna(False).astype(bool)
    duplicate_of = pd.Series(pd.NA, index=files.index, dtype="string")
    duplicate_of[is_copy] = files[Col.PATH].reindex(keeper_row[is_copy].to_numpy()).to_numpy()

    corrupt = ~files[Col.VALID]
    dropped = flags[[issue.value for issue in decisions.drop]].any(axis=1)
    reviewed = flags[[issue.value for issue in decisions.review]].any(axis=1)
    is_keeper = files[Col.DUP_GROUP].notna() & ~is_copy
    conditions = [corrupt, is_copy, dropped, reviewed, is_keeper]
    actions = np.select(
        conditions, [Action.DROP, Action.DROP, Action.DROP, Action.REVIEW, Action.KEEP], default=Action.KEEP
    )
    # Each reason is written only for the rows it explains (the first condition that holds, as for the actions):
    # building every reason for every row would make millions of strings to throw away.
    overlap_only = flags[Issue.OVERLAP.value] & ~flags[[Issue.NEAR_DUPLICATE.value, Issue.EXACT_DUPLICATE.value]
                                                       ].any(axis=1)
    explain: list[Callable[[np.ndarray], pd.Series]] = [
        lambda rows: "corrupt: " + files[Col.ERROR].iloc[rows].fillna("unreadable"),
        lambda rows: np.where(overlap_only.iloc[rows], "overlaps ", "duplicate of ")
        + duplicate_of.iloc[rows].fillna(""),
        lambda rows: "drop: " + _issue_text(flags.iloc[rows], decisions.drop),
        lambda rows: "review: " + _issue_text(flags.iloc[rows], decisions.review),
        lambda rows: "kept copy of duplicate group " + files[Col.DUP_GROUP].iloc[rows].astype("string").fillna(""),
    ]
    reasons = np.full(len(files), "no issue", dtype=object)
    which = np.select([condition.to_numpy(dtype=bool) for condition in conditions], list(range(len(conditions))),
                      default=len(conditions))
    for number, reason in enumerate(explain):
        rows = np.flatnonzero(which == number)
        reasons[rows] = reason(rows).to_numpy(dtype=object)
    unanalysed = np.flatnonzero((which == len(conditions)) & files[ENGINE_ERROR].notna().to_numpy(dtype=bool))
    reasons[unanalysed] = ("no issue found, but similarity could not analyse it ("
                           + files[ENGINE_ERROR].iloc[unanalysed] + ")").to_numpy(dtype=object)
    return pd.DataFrame(
        {
            Col.ACTION: pd.array(actions, dtype="string"),
            Col.REASON: pd.array(reasons, dtype="string"),
            Col.DUPLICATE_OF: duplicate_of,
        },
        index=files.index,
    )


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: allocating a million small containers would make it scan the whole
    heap (every ingest row's objects) several times, for nothing, since they cannot form cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def issue_lists(flags: pd.DataFrame) -> list[list[str]]:
    """Each row's issues as a list of names, in vocabulary (column) order; a new list per row."""
    with _without_cyclic_gc():
        lists: list[list[str]] = [[] for _ in range(len(flags))]
    for issue in flags.columns:
        for position in np.flatnonzero(flags[issue].to_numpy(dtype=bool)).tolist():
            lists[position].append(issue)
    return lists


def classify(
    files: pd.DataFrame,
    similarity: Similarity,
    matches: pd.DataFrame,
    config: CurateConfig,
    overrides: Mapping[str, Action] | None = None,
) -> pd.DataFrame:
    """The classification stage: the manifest frame, one row per ingested file, in ingest order, with a
    reviewer's `overrides` (path -> keep or drop) applied last."""
    evidence = build_evidence(files, similarity, matches, config)
    flags = detect_issues(evidence)
    manifest = evidence.files.copy()
    manifest[Col.ISSUES] = issue_lists(flags)
    manifest = manifest.join(decide(evidence, flags))
    return apply_overrides(manifest.reset_index(drop=True), overrides or {})
