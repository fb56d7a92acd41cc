"""Relations: which files share ground, and how much of each. Facts, from which decisions are taken.

Two readable files with the same bytes are `exact`. A pair that verification accepted is a `duplicate` when the
ground the two share covers at least `decisions.duplicate_share` of each image (the same picture, whatever the
transform), otherwise an `overlap`. The relations frame holds one row per related pair, each unordered pair once
(`row_a` < `row_b`), with the columns of `tasks.schema.PairCol`; `pairs.parquet` is that frame with paths.

A set of files with the same bytes is recorded as a star: each file paired with the set's first file (in row
order), not every pair of the set, which would grow with the square of the set's size (a folder of blank tiles).
Sameness of bytes is transitive, so the star says as much.

Ground too thin to verify is found by composition (`composed_relations`): tiles cut from a grid share a corner
with their diagonal neighbours (6 % of each at a quarter's overlap), below what verification looks for, and the
maps of two verified relations through the tile beside both place that corner exactly.
"""

import numpy as np
import pandas as pd

from tasks.geometry import IDENTITY, describe, shares, square_boxes, stacked
from tasks.schema import Check, Col, MatchCol, PairCol, Relation

# A file related to more files than this is not composed through (a blank or repeated tile related to many would
# make pairs by the square of its relations).
MAX_COMPOSED_DEGREE = 64
# A composed relation is recorded when its shared region covers at least this share of either file: two fits'
# errors can make tiles that only touch seem to share a sliver.
MIN_COMPOSED_SHARE = 0.02
RELATION_COLUMNS = [PairCol.ROW_A, PairCol.ROW_B, PairCol.RELATION, PairCol.SHARE_A, PairCol.SHARE_B,
                    PairCol.TRANSFORM, PairCol.INLIER_RATIO, PairCol.CORRELATION, PairCol.EVIDENCE, PairCol.CROSS_SPLIT,
                    PairCol.A_TO_B]
# The scores of each relation's evidence, each NaN where its check did not measure it.
SCORES = [PairCol.INLIER_RATIO, PairCol.CORRELATION]


def exact_pairs(files: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows (first, other) linking each readable file to the first readable file with the same sha256."""
    readable = files.loc[files[Col.VALID].to_numpy(dtype=bool) & files[Col.SHA256].notna().to_numpy(dtype=bool),
                         [Col.ROW, Col.SHA256]]
    readable = readable[readable[Col.SHA256].duplicated(keep=False)]  # grouping only these is much faster
    first = readable.groupby(Col.SHA256)[Col.ROW].transform("min")
    linked = readable[readable[Col.ROW] != first]
    return first[linked.index].to_numpy(dtype=np.int64), linked[Col.ROW].to_numpy(dtype=np.int64)


def evidence_score(evidence: np.ndarray, inlier_ratio: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """How strongly each relation's evidence holds, as the manifest's `match_score` reports it: 1 for the same bytes,
    else the inlier ratio or the correlation, whichever its check measured (for a composition, the weaker of its two
    relations': the smaller of both kinds)."""
    measured = np.fmin(np.asarray(inlier_ratio, float), np.asarray(correlation, float))
    return np.where(np.asarray(evidence) == Check.SHA256.value, 1.0, measured)


def relation_of(share_a: np.ndarray, share_b: np.ndarray, duplicate_share: float) -> np.ndarray:
    """`duplicate` where both shares reach `duplicate_share`, else `overlap` (strings)."""
    duplicate = np.minimum(share_a, share_b) >= duplicate_share
    return np.where(duplicate, Relation.DUPLICATE.value, Relation.OVERLAP.value).astype(object)


def composed_relations(files: pd.DataFrame, verified: pd.DataFrame, related: pd.DataFrame,
                       duplicate_share: float) -> pd.DataFrame:
    """Relations that follow from two verified relations through a third file (`Check.COMPOSITION`): the pair's
    map is the two maps composed, its shares those of the composed map, kept when either reaches
    `MIN_COMPOSED_SHARE`. Pairs in `related` (columns a < b: already related) and pairs of files with the same
    bytes are left out; of several paths between two files, the one through the first file by path is taken. Its
    scores are the weaker of the two relations' (each kind on its own: NaN where neither measured it). One step
    only: no chains of compositions."""
    count = len(verified)
    maps = stacked(verified[PairCol.A_TO_B])
    maps = np.concatenate([maps, np.linalg.inv(maps)]) if count else maps  # edge e + count runs e backwards
    ends = verified[PairCol.ROW_A].to_numpy(np.int64), verified[PairCol.ROW_B].to_numpy(np.int64)
    edges = pd.DataFrame({"middle": np.concatenate(ends), "end": np.concatenate(ends[::-1]),
                          "edge": np.arange(2 * count),
                          **{score: np.tile(verified[score].to_numpy(float), 2) for score in SCORES}})
    degree = edges["middle"].value_counts()
    edges = edges[edges["middle"].map(degree).to_numpy() <= MAX_COMPOSED_DEGREE]
    paths = edges.rename(columns={"end": "a", "edge": "to_a"}).merge(
        edges.rename(columns={"end": "b", "edge": "to_b"}), on="middle", suffixes=("_a", "_b"))
    paths = paths[paths["a"].to_numpy() < paths["b"].to_numpy()]
    sha = files.set_index(Col.ROW)[Col.SHA256]
    paths = paths[sha.reindex(paths["a"]).to_numpy() != sha.reindex(paths["b"]).to_numpy()]
    paths = paths.merge(related, on=["a", "b"], how="left", indicator=True)
    paths = paths[(paths.pop("_merge") == "left_only").to_numpy()]
    paths = paths.assign(through=files.set_index(Col.ROW)[Col.PATH].reindex(paths["middle"]).to_numpy())
    paths = paths.sort_values(["a", "b", "through"]).drop_duplicates(["a", "b"])
    # a -> middle (the edge middle -> a run backwards), then middle -> b.
    backwards = (paths["to_a"].to_numpy() + count) % (2 * count) if count else paths["to_a"].to_numpy()
    composed = maps[paths["to_b"].to_numpy()] @ maps[backwards]
    # Most paths lead nowhere near (two steps the same way along a row of tiles): the bounding box of a's square
    # mapped into b settles them before the exact clipping.
    low, high = square_boxes(composed)
    near = (low < 1.0).all(axis=1) & (high > 0.0).all(axis=1)  # NaN (beyond the horizon) compares false
    paths, composed = paths[near], composed[near]
    measured = np.array([shares(m) for m in composed]).reshape(-1, 2)
    keep = measured.max(axis=1, initial=0.0) >= MIN_COMPOSED_SHARE if len(measured) else np.zeros(0, bool)
    paths, composed, measured = paths[keep], composed[keep], measured[keep]
    size = files.set_index(Col.ROW)[[Col.WIDTH, Col.HEIGHT]].astype("float64")
    size_a, size_b = size.reindex(paths["a"]).to_numpy(), size.reindex(paths["b"]).to_numpy()
    transforms = [describe(np.diag(sb) @ m[:2, :2] @ np.diag(1.0 / sa), share_a, share_b)
                  for m, sa, sb, (share_a, share_b) in zip(composed, size_a, size_b, measured)]
    return pd.DataFrame({
        PairCol.ROW_A: paths["a"].to_numpy(np.int64), PairCol.ROW_B: paths["b"].to_numpy(np.int64),
        PairCol.RELATION: relation_of(measured[:, 0], measured[:, 1], duplicate_share),
        PairCol.SHARE_A: measured[:, 0], PairCol.SHARE_B: measured[:, 1], PairCol.TRANSFORM: transforms,
        **{score: np.fmin(paths[f"{score}_a"].to_numpy(float), paths[f"{score}_b"].to_numpy(float))
           for score in SCORES},
        PairCol.EVIDENCE: Check.COMPOSITION.value,
        PairCol.A_TO_B: pd.Series([m.ravel() for m in composed], dtype=object),
    })


def build_relations(files: pd.DataFrame, matches: pd.DataFrame, duplicate_share: float) -> pd.DataFrame:
    """The relations frame from ingest rows (row, split, valid, sha256, width, height) and the pairs verification
    accepted (`tasks.verify.verify_candidates`), with those composed from them (`composed_relations`). A verified
    pair of files with the same bytes is left to the exact star."""
    first, other = exact_pairs(files)
    sha = files.set_index(Col.ROW)[Col.SHA256]
    verified = matches[(sha.reindex(matches[PairCol.ROW_A]).to_numpy()
                        != sha.reindex(matches[PairCol.ROW_B]).to_numpy())]
    exact = pd.DataFrame({
        PairCol.ROW_A: first, PairCol.ROW_B: other, PairCol.RELATION: Relation.EXACT.value,
        PairCol.SHARE_A: 1.0, PairCol.SHARE_B: 1.0, PairCol.TRANSFORM: "same", **{score: np.nan for score in SCORES},
        PairCol.EVIDENCE: Check.SHA256.value,
        PairCol.A_TO_B: pd.Series([IDENTITY.ravel()] * len(first), dtype=object),
    })
    shares_a = verified[MatchCol.SHARE_A].to_numpy(dtype=float)
    shares_b = verified[MatchCol.SHARE_B].to_numpy(dtype=float)
    accepted = pd.DataFrame({
        PairCol.ROW_A: verified[PairCol.ROW_A].to_numpy(dtype=np.int64),
        PairCol.ROW_B: verified[PairCol.ROW_B].to_numpy(dtype=np.int64),
        PairCol.RELATION: relation_of(shares_a, shares_b, duplicate_share),
        PairCol.SHARE_A: shares_a, PairCol.SHARE_B: shares_b,
        PairCol.TRANSFORM: verified[MatchCol.TRANSFORM].astype(str).to_numpy(),
        **{score: verified[score].to_numpy(dtype=float) for score in SCORES},
        PairCol.EVIDENCE: verified[MatchCol.EVIDENCE].astype(str).to_numpy(),
        PairCol.A_TO_B: pd.Series(list(verified[MatchCol.A_TO_B]), dtype=object),
    })
    ends = np.concatenate([first, accepted[PairCol.ROW_A]]), np.concatenate([other, accepted[PairCol.ROW_B]])
    related = pd.DataFrame({"a": np.minimum(*ends), "b": np.maximum(*ends)})
    composed = composed_relations(files, accepted, related, duplicate_share)
    relations = pd.concat([part for part in (exact, accepted, composed) if len(part)] or [accepted],
                          ignore_index=True)
    split = files.set_index(Col.ROW)[Col.SPLIT]
    relations[PairCol.CROSS_SPLIT] = (split.reindex(relations[PairCol.ROW_A]).to_numpy()
                                      != split.reindex(relations[PairCol.ROW_B]).to_numpy())
    relations = relations.sort_values([PairCol.ROW_A, PairCol.ROW_B], kind="stable").reset_index(drop=True)
    return relations[RELATION_COLUMNS]


def pairs_with_paths(relations: pd.DataFrame, paths: pd.Series) -> pd.DataFrame:
    """The relations frame as `pairs.parquet` holds it: each pair's files by path (`paths` indexed by row)."""
    named = relations.drop(columns=[PairCol.ROW_A, PairCol.ROW_B])
    named.insert(0, PairCol.PATH_B, paths.reindex(relations[PairCol.ROW_B]).to_numpy())
    named.insert(0, PairCol.PATH_A, paths.reindex(relations[PairCol.ROW_A]).to_numpy())
    return named
