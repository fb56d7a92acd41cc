"""Classification: from ingest rows, similarity pairs, relations and statistics to issues and duplicate sets.

Each issue type has one detector, registered in `DETECTORS`; the issue vocabulary itself lives in
`tasks.schema.Issue`, and a check at import time fails if an issue has no detector (or two).

Duplicate sets (`dup_group`) are the connected components of `exact` and `duplicate` relations (`tasks.relations`);
overlaps never join them, so a chain of overlapping tiles is not one group. Similarity bands are reported. What
happens to each file is decided from the issues and the relations in `tasks.decisions`.
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
from tasks.decisions import ENGINE_ERROR, decide
from tasks.imagestats import robust_z
from tasks.overrides import apply_overrides
from tasks.relations import evidence_score
from tasks.schema import Action, Band, Col, Issue, PairCol, Relation
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, Similarity, both_sides, neighbours_by_row

SAME_PICTURE = (Relation.EXACT.value, Relation.DUPLICATE.value)  # relations that join a duplicate set


@dataclass(frozen=True)
class Evidence:
    """Everything detectors may look at. `files` is indexed by row and already holds statistics, nearest
    neighbours, best relations and duplicate sets; `relations` holds every related pair (`tasks.relations`)."""

    files: pd.DataFrame
    relations: pd.DataFrame
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
    bands = config.expert.bands
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


def _density_ratio(neighbours: pd.DataFrame, same_picture: pd.DataFrame, k: int) -> pd.Series:
    """Mean similarity of each row to its k nearest neighbours, divided by the same mean of those neighbours,
    leaving out its own copies (the pairs of `same_picture`, relations of the same picture).

    About 1 where an image sits as densely as its neighbours; well below 1 for an image far from a dataset
    whose other images are close to each other: a local-outlier-factor, so a sparse class is not flagged. A copy
    is the same picture, not another one of the domain: left in, it made its twin look at home, however odd the
    picture (overlapping tiles are distinct pictures and stay in). `neighbours` as
    `tasks.similarity.neighbours_by_row` returns them."""
    nearest = neighbours[neighbours["rank"].to_numpy() < k]
    copies = both_sides(same_picture[[PairCol.ROW_A, PairCol.ROW_B]])
    nearest = nearest.merge(copies, on=["row", "other"], how="left", indicator=True)
    nearest = nearest[(nearest.pop("_merge") == "left_only").to_numpy()]
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


def _best_matches(frame: pd.DataFrame, relations: pd.DataFrame) -> pd.DataFrame:
    """Each row's strongest relation: exact, then duplicate, then overlap; then the higher score of its evidence
    (`evidence_score`)."""
    scored = relations.assign(score=evidence_score(relations[PairCol.EVIDENCE], relations[PairCol.INLIER_RATIO],
                                                   relations[PairCol.CORRELATION]))
    both = both_sides(scored[[PairCol.ROW_A, PairCol.ROW_B, PairCol.RELATION, "score", PairCol.TRANSFORM]])
    strength = both[PairCol.RELATION].map({relation.value: rank for rank, relation in enumerate(Relation)})
    best = both.assign(strength=strength).sort_values(["row", "strength", "score", "other"],
                                                      ascending=[True, True, False, True])
    best = best.drop_duplicates("row").set_index("row")
    return pd.DataFrame(
        {
            Col.MATCH_PATH: frame[Col.PATH].reindex(best["other"].to_numpy()).to_numpy(),
            Col.MATCH_SCORE: best["score"].astype("float64").to_numpy(),
            Col.MATCH_TRANSFORM: best[PairCol.TRANSFORM].to_numpy(),
        },
        index=best.index,
    )


def build_evidence(
    files: pd.DataFrame, similarity: Similarity, relations: pd.DataFrame, config: CurateConfig
) -> Evidence:
    """Join ingest rows with nearest neighbours, relations, pair bands, clusters and duplicate sets."""
    frame = files.set_index(Col.ROW, drop=False).sort_index()
    frame[ENGINE_ERROR] = pd.Series(similarity.unanalysed, dtype="string").reindex(frame.index)

    pairs = similarity.pairs
    neighbours = neighbours_by_row(pairs)
    nearest = _nearest_neighbours(frame, neighbours)
    same = relations[relations[PairCol.RELATION].isin(SAME_PICTURE).to_numpy(dtype=bool)]
    frame[Col.DENSITY_RATIO] = _density_ratio(neighbours, same, config.expert.similarity.nearest_neighbors
                                              ).reindex(frame.index)
    frame[Col.NN_PATH] = nearest[Col.NN_PATH].reindex(frame.index).astype("string")
    frame[Col.NN_SIMILARITY] = nearest[Col.NN_SIMILARITY].reindex(frame.index).astype("float64")

    n_rows = len(frame)
    linked = pairs[pairs[SIMILARITY] >= config.expert.similarity.cluster_similarity]
    clusters = connected_groups(n_rows, linked[PAIR_A].to_numpy(), linked[PAIR_B].to_numpy())
    frame[Col.CLUSTER] = pd.array(np.where(clusters >= 0, clusters, None), dtype="Int64")

    best = _best_matches(frame, relations)
    for column, dtype in ((Col.MATCH_PATH, "string"), (Col.MATCH_SCORE, "float64"), (Col.MATCH_TRANSFORM, "string")):
        frame[column] = best[column].reindex(frame.index).astype(dtype)

    # Duplicate sets come from relations of the same picture, never from a similarity threshold alone (similarity
    # ranks candidates, verification decides) and never from overlaps: tiles that share a strip are distinct.
    groups = connected_groups(n_rows, same[PairCol.ROW_A].to_numpy(dtype=np.int64),
                              same[PairCol.ROW_B].to_numpy(dtype=np.int64))
    frame[Col.DUP_GROUP] = pd.array(np.where(groups >= 0, groups, None), dtype="Int64")
    return Evidence(files=frame, relations=relations, config=config)


def _rows_in_band(evidence: Evidence, band: Band) -> pd.Series:
    """Rows whose strongest pair (their nearest neighbour) falls in `band`: each image is reported in its
    strongest band only."""
    if "nn_band" not in evidence.computed:
        evidence.computed["nn_band"] = band_of(evidence.files[Col.NN_SIMILARITY], evidence.config)
    return (evidence.computed["nn_band"] == band.value).fillna(False).astype(bool)


def _group_has_many(evidence: Evidence, column: str) -> pd.Series:
    """Rows whose duplicate set holds more than one distinct non-null value of `column`."""
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


def _strength(values: pd.Series, min_spread: float, threshold: float, baseline: pd.Series) -> pd.Series:
    """How far below the median of the `baseline` rows a value lies, in robust standard deviations, as a multiple
    of `threshold` (> 1 = beyond it)."""
    return (-robust_z(values, min_spread=min_spread, baseline=baseline) / threshold).fillna(0.0)


def one_per_duplicate_set(files: pd.DataFrame) -> pd.Series:
    """Rows that stand for their picture once: every file outside a duplicate set, and each set's first row. What
    is normal for a dataset is measured over these, so that many copies of one picture do not make it the norm."""
    return files[Col.DUP_GROUP].isna() | ~files[Col.DUP_GROUP].duplicated()


def anomaly_strengths(evidence: Evidence) -> pd.DataFrame:
    """How far each image lies beyond the threshold of each anomaly, as a multiple of it (> 1 = beyond).

    All are robust z-scores against this dataset. Blurry needs both a low contrast-normalised sharpness (a soft
    but well-exposed scene is not blurry) and a low Laplacian variance (a dim or flat but sharp image is not
    blurry), or little fine detail in some direction (a smear); dark uses log brightness; bright the log distance
    from white of the black level (washed out) or of the mean (over-exposed: most of the image near white, though
    its shadows remain); outlier the density ratio. Medians and spreads are taken over one file per duplicate
    set (`one_per_duplicate_set`)."""
    if "anomaly_strengths" in evidence.computed:
        return evidence.computed["anomaly_strengths"]
    files, quality, expert = evidence.files, evidence.config.quality, evidence.config.expert.quality
    baseline = one_per_duplicate_set(files)

    def strength(values: pd.Series, min_spread: float, threshold: float) -> pd.Series:
        return _strength(values, min_spread, threshold, baseline)

    strengths = evidence.computed["anomaly_strengths"] = pd.DataFrame(
        {
            Issue.BLURRY.value: np.maximum(
                np.minimum(
                    strength(files[Col.SHARPNESS], 0.1, quality.blurry_z),
                    strength(np.log1p(files[Col.BLUR]), 0.1, quality.blurry_z),
                ),
                strength(files[Col.FINE_DETAIL], 0.02, expert.blurry_fine_detail_z),
            ),
            Issue.DARK.value: strength(np.log1p(files[Col.BRIGHTNESS]), 0.05, quality.dark_z),
            Issue.BRIGHT.value: np.maximum(
                strength(np.log(256.0 - files[Col.BLACK_LEVEL]), 0.05, quality.bright_z),
                strength(np.log(256.0 - files[Col.BRIGHTNESS]), 0.05, expert.bright_mean_z),
            ),
            Issue.OUTLIER.value: strength(files[Col.DENSITY_RATIO], 0.01, quality.outlier_z),
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


def _rows_related(evidence: Evidence, related: pd.Series) -> pd.Series:
    """Rows at either end of the relations where `related` holds."""
    chosen = evidence.relations[related.to_numpy(dtype=bool)]
    rows = np.concatenate([chosen[PairCol.ROW_A].to_numpy(), chosen[PairCol.ROW_B].to_numpy()])
    return evidence.files.index.to_series().isin(rows)


@detector(Issue.NEAR_DUPLICATE)
def _near_duplicate(evidence: Evidence) -> pd.Series:
    return _rows_related(evidence, evidence.relations[PairCol.RELATION] == Relation.DUPLICATE.value)


@detector(Issue.OVERLAP)
def _overlap(evidence: Evidence) -> pd.Series:
    return _rows_related(evidence, evidence.relations[PairCol.RELATION] == Relation.OVERLAP.value)


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
    # A set of identical files is recorded as a star around its first file: two others in different splits are
    # related too, though no row of the relations names them together.
    files = evidence.files
    identical = _exact_duplicate(evidence)
    sets = files.loc[identical, [Col.SHA256, Col.SPLIT]]
    spanning = sets.groupby(Col.SHA256)[Col.SPLIT].transform("nunique") > 1
    return _rows_related(evidence, evidence.relations[PairCol.CROSS_SPLIT]) | files.index.isin(
        spanning.index[spanning.to_numpy()])


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
    relations: pd.DataFrame,
    config: CurateConfig,
    overrides: Mapping[str, Action] | None = None,
) -> pd.DataFrame:
    """The classification stage: the manifest frame, one row per ingested file, in ingest order, with a
    reviewer's `overrides` (path -> keep or drop) applied last. `relations` as `tasks.relations.build_relations`
    returns them."""
    evidence = build_evidence(files, similarity, relations, config)
    flags = detect_issues(evidence)
    manifest = evidence.files.copy()
    manifest[Col.ISSUES] = issue_lists(flags)
    manifest = manifest.join(decide(evidence.files, relations, flags, config.decisions, overrides))
    return apply_overrides(manifest.reset_index(drop=True), overrides or {})
