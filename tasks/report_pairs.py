"""The report's pair galleries: which related pairs (`pairs.parquet`) it shows, in words and as drawn regions.

Every gallery item is an `Item`: one card, a group of cards, or two files side by side. Items of the duplicate,
overlap and split-leak galleries carry, for some of their cards, the region of the image that shows ground the
other file shows too (`tasks.geometry.shared_regions` of the pair's fitted map) and a line of words naming the
relation and its shares. `region_svg` draws such a region over a thumbnail.

Each gallery's candidates are chosen with vectorised filters and sorts, and only the items shown are looked up one
by one, so a million-row manifest with millions of pairs costs no Python loop over all of them. Captions and notes
are plain text: `tasks.report` escapes them. SVG coordinates are numbers formatted here, never user data.
"""

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tasks.geometry import shared_regions
from tasks.relations import evidence_score
from tasks.schema import Action, Check, Col, PairCol, Relation

Row = dict[str, Any]  # one manifest row as a plain dict: rendering thousands of cards stays cheap
# What happened to a leaking training file: dropped or sent to review, or kept by a reviewer's override.
DONE = {Action.DROP.value: "dropped", Action.REVIEW.value: "sent to review", Action.KEEP.value: "kept"}


@dataclass(frozen=True)
class Item:
    """One gallery item: its rows (one card each), a caption (empty for a lone card), and for some cards, keyed by
    position in `rows`, the shared region to draw on the thumbnail (a polygon in the image's unit square) and a
    note shown on the card."""

    rows: list[Row]
    caption: str = ""
    regions: dict[int, np.ndarray] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """One row of `pairs.parquet` seen from one of its two files (`this`) towards the other."""

    this: str
    other: str
    relation: str
    share_this: float
    share_other: float
    transform: str  # as recorded: how the pair's b relates to its a, whichever side `this` is
    evidence: str
    score: float  # `tasks.relations.evidence_score`
    region_this: np.ndarray
    region_other: np.ndarray

    @classmethod
    def of(cls, record: Row) -> "Link":
        """From a record of `_seen_from`."""
        region_a, region_b = shared_regions(np.asarray(record[PairCol.A_TO_B], dtype=float))
        flipped = record["flipped"]
        return cls(
            this=record["this"], other=record["other"], relation=record[PairCol.RELATION],
            share_this=record[PairCol.SHARE_B if flipped else PairCol.SHARE_A],
            share_other=record[PairCol.SHARE_A if flipped else PairCol.SHARE_B],
            transform=record[PairCol.TRANSFORM], evidence=record[PairCol.EVIDENCE],
            score=float(evidence_score(record[PairCol.EVIDENCE], record[PairCol.INLIER_RATIO],
                                       record[PairCol.CORRELATION])),
            region_this=region_b if flipped else region_a, region_other=region_a if flipped else region_b,
        )

    def describe(self) -> str:
        """The relation in words, relation first: "overlap: 25 % of a.jpg, 30 % of b.jpg · shift · keypoints 0.83"."""
        words = (f"{self.relation}: {_percent(self.share_this)} of {_name(self.this)}, "
                 f"{_percent(self.share_other)} of {_name(self.other)}")
        if self.evidence == Check.SHA256.value:
            return f"{words} · same bytes"
        return f"{words} · {self.transform} · {self.evidence.replace('_', ' ')} {self.score:.2f}"


def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _is(value: Any, path: str) -> bool:
    """Whether a manifest value (a path, or missing: None or pd.NA, which `==` cannot test) is `path`."""
    return isinstance(value, str) and value == path


def rows_by_path(manifest: pd.DataFrame, paths: set[str]) -> dict[str, Row]:
    """The manifest rows of `paths`, by path."""
    chosen = manifest.iloc[np.flatnonzero(manifest[Col.PATH].isin(paths).to_numpy(dtype=bool))]
    return dict(zip(chosen[Col.PATH], chosen.to_dict("records")))


def _seen_from(pairs: pd.DataFrame, paths: set[str]) -> pd.DataFrame:
    """Every pair with a file among `paths`, once from each such file: the pair's columns beside `this` (that file),
    `other` and `flipped` (whether `this` is the pair's b)."""
    sides = []
    for flipped, this, other in ((False, PairCol.PATH_A, PairCol.PATH_B), (True, PairCol.PATH_B, PairCol.PATH_A)):
        chosen = pairs.iloc[np.flatnonzero(pairs[this].isin(paths).to_numpy(dtype=bool))]
        sides.append(chosen.assign(this=chosen[this], other=chosen[other], flipped=flipped))
    return pd.concat(sides, ignore_index=True).sort_values(["this", "other"], kind="stable")


def links_of(pairs: pd.DataFrame, paths: set[str]) -> dict[str, list[Link]]:
    """Every pair with a file among `paths`, as a `Link` from that file, by path; each list ordered by the other
    file's path."""
    links: dict[str, list[Link]] = {}
    for record in _seen_from(pairs, paths).to_dict("records"):
        links.setdefault(record["this"], []).append(Link.of(record))
    return links


def region_svg(region: np.ndarray, width: Any, height: Any, box: int) -> str:
    """An SVG the size of the `box`-pixel square a thumbnail is shown in, outlining `region` (a polygon in the unit
    square of an image of `width` x `height` pixels) where the image appears: scaled to fit the box and centred, as
    `object-fit: contain` shows it. Empty when there is nothing to draw."""
    if len(region) < 3 or pd.isna(width) or pd.isna(height) or min(width, height) <= 0:
        return ""
    scale = box / max(width, height)
    shown = np.array([width * scale, height * scale])
    corners = (box - shown) / 2 + np.clip(region, 0.0, 1.0) * shown
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)
    return (f'<svg class="region" viewBox="0 0 {box} {box}" width="{box}" height="{box}" aria-hidden="true">'
            f'<polygon points="{points}"/></svg>')


def keeper_regions(items: list[Item], pairs: pd.DataFrame) -> list[Item]:
    """Duplicate-set items with, on each member that `pairs` links directly to the set's kept file (its
    `duplicate_of`), the region it shares with that file and the relation in words. The kept card gets neither; a
    member linked only through another member (a star of same-bytes files, a chain of copies) gets neither."""
    members = {row[Col.PATH]: row[Col.DUPLICATE_OF] for item in items for row in item.rows
               if isinstance(row[Col.DUPLICATE_OF], str)}
    seen = _seen_from(pairs, set(members))
    links = {record["this"]: Link.of(record) for record in seen.to_dict("records")
             if record["other"] == members[record["this"]]}
    drawn = []
    for item in items:
        linked = {i: links[row[Col.PATH]] for i, row in enumerate(item.rows) if row[Col.PATH] in links}
        drawn.append(replace(item, regions={i: link.region_this for i, link in linked.items()},
                             notes={i: link.describe() for i, link in linked.items()}))
    return drawn


def overlap_items(manifest: pd.DataFrame, pairs: pd.DataFrame, limit: int) -> tuple[list[Item], int]:
    """Pairs whose relation is `overlap`, up to `limit`, each as its two files side by side with the shared region
    drawn on both: pairs across splits first, then by the larger of the two shares, largest first, then by path.
    Also the number of overlap pairs."""
    overlaps = pairs.iloc[np.flatnonzero((pairs[PairCol.RELATION] == Relation.OVERLAP.value).to_numpy(dtype=bool))]
    total = len(overlaps)
    # Shares are at most 1, so this one number puts every pair across splits first. Only pairs that can reach the
    # first `limit` by it are sorted by path too: a string sort of millions of pairs would cost seconds.
    rank = overlaps[PairCol.CROSS_SPLIT].to_numpy(dtype=float) * 2 + np.maximum(
        overlaps[PairCol.SHARE_A].to_numpy(dtype=float), overlaps[PairCol.SHARE_B].to_numpy(dtype=float))
    reach = np.ones(total, dtype=bool)
    if total > limit > 0:
        reach = rank >= np.partition(rank, total - limit)[total - limit]
    shown = overlaps[reach].assign(_rank=-rank[reach]).sort_values(
        ["_rank", PairCol.PATH_A, PairCol.PATH_B], kind="stable").head(limit)
    rows = rows_by_path(manifest, set(shown[PairCol.PATH_A]) | set(shown[PairCol.PATH_B]))
    items = []
    for record in shown.to_dict("records"):
        link = Link.of({**record, "this": record[PairCol.PATH_A], "other": record[PairCol.PATH_B], "flipped": False})
        across = " · across splits" if record[PairCol.CROSS_SPLIT] else ""
        items.append(Item(rows=[rows[link.this], rows[link.other]], caption=link.describe() + across,
                          regions={0: link.region_this, 1: link.region_other}))
    return items, total


def leak_items(manifest: pd.DataFrame, pairs: pd.DataFrame, limit: int) -> tuple[list[Item], int, int]:
    """Each training file with `leaks_into` set, up to `limit`, beside the evaluation file it leaks into, with the
    shared region drawn on both, grouped by evaluation file, then by path. When `pairs` holds no pair of the two
    (the training file shares ground with a dropped copy of the evaluation file), the caption names that copy and
    nothing is drawn. Also the number of leaking files, and of cross-split pairs that join no leaking file (two
    training splits, two evaluation splits, an evaluation file dropped for another reason): no action needed."""
    leaking = manifest.iloc[np.flatnonzero(manifest[Col.LEAKS_INTO].notna().to_numpy(dtype=bool))]
    leakers = set(leaking[Col.PATH])
    cross = pairs.iloc[np.flatnonzero(pairs[PairCol.CROSS_SPLIT].to_numpy(dtype=bool))]
    no_action = int((~cross[PairCol.PATH_A].isin(leakers) & ~cross[PairCol.PATH_B].isin(leakers)).sum())
    shown = leaking.sort_values([Col.LEAKS_INTO, Col.PATH], kind="stable").head(limit)
    target = dict(zip(shown[Col.PATH], shown[Col.LEAKS_INTO]))
    seen = _seen_from(pairs, set(target))
    rows = rows_by_path(manifest, set(target) | set(target.values()) | set(seen["other"]))
    direct: dict[str, Link] = {}
    via_copy: dict[str, Link] = {}  # of the evaluation file's dropped copies it shares ground with, the first by path
    for record in seen.to_dict("records"):
        this, other = record["this"], record["other"]
        if other == target[this]:
            direct[this] = Link.of(record)
        elif this not in via_copy and _is(rows[other][Col.DUPLICATE_OF], target[this]):
            via_copy[this] = Link.of(record)
    items = []
    for row in shown.to_dict("records"):
        path = row[Col.PATH]
        evaluation = rows[target[path]]
        done = (f"{_name(path)} ({row[Col.SPLIT]}) {DONE.get(row[Col.ACTION], row[Col.ACTION])}: shares ground "
                f"with {evaluation[Col.PATH]} ({evaluation[Col.SPLIT]})")
        if path in direct:
            link = direct[path]
            items.append(Item(rows=[row, evaluation], caption=f"{done} · {link.describe()}",
                              regions={0: link.region_this, 1: link.region_other}))
            continue
        copy = via_copy.get(path)
        through = f" through its dropped copy {copy.other} · {copy.describe()}" if copy else ""
        items.append(Item(rows=[row, evaluation],
                          caption=f"{done}{through} · no pair of these two in pairs.parquet, so nothing is drawn"))
    return items, len(leaking), no_action


def moved_items(manifest: pd.DataFrame, pairs: pd.DataFrame, limit: int) -> tuple[list[Item], int]:
    """The sets of files that share ground (connected by `pairs`) with a file moved to another split (its
    `curated_split` is not its `split`), largest first, at most `limit`; and how many such sets there are."""
    moved = manifest[Col.SPLIT] != manifest[Col.CURATED_SPLIT]
    if not moved.any():
        return [], 0
    position = pd.Series(np.arange(len(manifest)), index=manifest[Col.PATH].to_numpy())
    a = position.reindex(pairs[PairCol.PATH_A]).to_numpy()
    b = position.reindex(pairs[PairCol.PATH_B]).to_numpy()
    inside = ~(np.isnan(a) | np.isnan(b))
    graph = coo_matrix((np.ones(int(inside.sum()), np.int8), (a[inside].astype(int), b[inside].astype(int))),
                       shape=(len(manifest), len(manifest)))
    sets = pd.Series(connected_components(graph, directed=False)[1], index=manifest.index)
    chosen = sets[sets.isin(set(sets[moved.to_numpy()]))]
    sizes = chosen.value_counts()
    ordered = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:limit]
    items = []
    for number, size in ordered:
        rows = manifest.loc[chosen.index[chosen.to_numpy() == number]].sort_values(Col.PATH).to_dict("records")
        origins = pd.Series([row[Col.SPLIT] for row in rows]).value_counts()
        items.append(Item(rows, caption=f"{size:,} files written to {rows[0][Col.CURATED_SPLIT]}, from "
                                        + ", ".join(f"{split} ({count})" for split, count in origins.items())))
    return items, len(sizes)
