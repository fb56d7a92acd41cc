"""Leak-free splits: every set of files that share ground goes wholly to one split (`decisions.split_leak:
reassign`), so that no relation crosses the curated splits and nothing is dropped for leakage.

The sets are the connected components of all relations (exact, duplicate and overlap) among the files of splits
that may change (all but `decisions.fixed_splits`). A set inside one split stays there. A set spanning several
goes, by default, to the split that holds most of it (fewest files moved); then sets are moved, one at a time,
wherever that brings the splits' sizes within `SIZE_TOLERANCE` of the input's and their class shares within
`CLASS_TOLERANCE`, as long as any move helps; first of all, that no split loses the last file of a class it held.
A labeled file only goes to a split that holds labeled files, an unlabeled one to a split of unlabeled files; a set
with unlabeled files of a training split sends its labeled files to a training split too, so that the ground it
shares with them is not evaluation ground. Files that share ground with a fixed split will yield to it (dropped as
leaks): they neither move nor count in the balance.
"""

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tasks.config import DecisionsConfig
from tasks.schema import Col, PairCol

# A split's size may stray this far from the input's, as a share of it; a class's share of a split this far (in
# share, 0.03 = 3 points): the bounds, met where the sets of shared ground allow.
SIZE_TOLERANCE, CLASS_TOLERANCE = 0.03, 0.03
# Moves tried at most when balancing: each is the best single move of a set, so this bounds the time, not the answer
# on any dataset measured.
MAX_BALANCING_MOVES = 10_000


def ground_sets(rows: np.ndarray, relations: pd.DataFrame) -> np.ndarray:
    """The component of each of `rows` in the graph of `relations` among them (singletons for the unrelated)."""
    position = pd.Series(np.arange(len(rows)), index=rows)
    a = position.reindex(relations[PairCol.ROW_A]).to_numpy()
    b = position.reindex(relations[PairCol.ROW_B]).to_numpy()
    inside = ~(np.isnan(a) | np.isnan(b))
    a, b = a[inside].astype(np.int64), b[inside].astype(np.int64)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(len(rows), len(rows)))
    return connected_components(graph, directed=False)[1]


class _Balance:
    """The curated splits' labeled files counted by class, and how far they stray from the input's."""

    def __init__(self, given: pd.Series, curated: pd.Series, labels: pd.Series, splits: Iterable[str]) -> None:
        self.target = pd.crosstab(given, labels).reindex(index=list(splits), fill_value=0).astype(float)
        self.counts = pd.crosstab(curated, labels).reindex(index=self.target.index, columns=self.target.columns,
                                                           fill_value=0).astype(float)

    def by_class(self, labels: pd.Series) -> pd.Series:
        """Counts of `labels` in the table's class order."""
        return labels.value_counts().reindex(self.target.columns, fill_value=0).astype(float)

    def stray(self, split: str) -> float:
        """How far beyond the tolerances the split lies: its size, and each class's count, off the input's by more
        than the tolerance, as shares of the input's size. (Counts, not shares: a split being filled again from
        nothing gets closer with each set it receives, where its class shares would swing.)"""
        now, then = self.counts.loc[split], self.target.loc[split]
        wanted = then.sum()
        if wanted == 0:
            return 0.0
        size = max(0.0, abs(now.sum() - wanted) / wanted - SIZE_TOLERANCE)
        classes = float(np.maximum(0.0, np.abs(now - then) / wanted - CLASS_TOLERANCE).sum())
        # A class the split held and holds no more weighs most: evaluating without it is not evaluating it.
        return size + classes + float(((then > 0) & (now == 0)).sum())

    def move(self, label_counts: pd.Series, source: str, target: str) -> None:
        self.counts.loc[source] -= label_counts
        self.counts.loc[target] += label_counts

    def gain(self, label_counts: pd.Series, source: str, target: str) -> float:
        """How much closer to the tolerances moving files of these class counts from `source` to `target` brings
        the two splits (positive: closer)."""
        before = self.stray(source) + self.stray(target)
        self.move(label_counts, source, target)
        after = self.stray(source) + self.stray(target)
        self.move(label_counts, target, source)
        return before - after


def reassign_splits(files: pd.DataFrame, relations: pd.DataFrame, decisions: DecisionsConfig) -> pd.Series:
    """The curated split of every row of `files` (indexed by row; split, label, valid): each set of files that share
    ground wholly in one split (see the module's docstring). Files of fixed splits, and unreadable files, keep
    their split; so do the files of a set whose splits leave it no choice."""
    curated = files[Col.SPLIT].astype(str).copy()
    fixed = files[Col.SPLIT].isin(decisions.fixed_splits) & files[Col.VALID]
    ends = relations[[PairCol.ROW_A, PairCol.ROW_B]].to_numpy()
    touching_fixed = np.isin(ends, files.index[fixed.to_numpy()]).any(axis=1)
    bound = files.index.isin(ends[touching_fixed].ravel()) & ~fixed.to_numpy()  # will yield to a fixed split
    movable = ~fixed.to_numpy() & ~bound & files[Col.VALID].to_numpy(dtype=bool)
    rows = files.index.to_numpy()[movable]
    sets = pd.Series(ground_sets(rows, relations), index=rows)
    frame = files.loc[rows, [Col.SPLIT, Col.LABEL]].assign(set=sets, labeled=files.loc[rows, Col.LABEL].notna())
    spanning = frame.groupby("set")[Col.SPLIT].transform("nunique") > 1
    frame = frame[spanning.to_numpy()]
    if frame.empty:
        return curated

    labeled_splits = sorted(files.loc[files[Col.LABEL].notna(), Col.SPLIT].unique())
    unlabeled_splits = sorted(files.loc[files[Col.LABEL].isna(), Col.SPLIT].unique())
    evaluation = set(decisions.evaluation_splits)

    def majority(part: pd.DataFrame, allowed: list[str]) -> str | None:
        counts = part[Col.SPLIT].value_counts()
        counts = counts[counts.index.isin(allowed)]
        return None if counts.empty else sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]

    choices: dict[int, list[str]] = {}  # set -> the labeled splits it may go to, the chosen one first
    for number, part in frame.groupby("set"):
        labeled, unlabeled = part[part["labeled"]], part[~part["labeled"]]
        if len(unlabeled):
            destination = majority(unlabeled, [s for s in unlabeled_splits if s not in decisions.fixed_splits])
            curated[unlabeled.index] = destination or curated[unlabeled.index]
        if labeled.empty:
            continue
        allowed = [s for s in labeled_splits if s not in decisions.fixed_splits and s in set(labeled[Col.SPLIT])]
        if len(unlabeled) and not set(unlabeled[Col.SPLIT]) <= evaluation:
            # Ground shared with training files that cannot leave the unlabeled split: keep it on the training side.
            training = [s for s in allowed if s not in evaluation] or [
                s for s in labeled_splits if s not in evaluation and s not in decisions.fixed_splits]
            allowed = training or allowed
        destination = majority(labeled, allowed) or (allowed[0] if allowed else None)
        if destination is None:
            continue
        choices[number] = [destination, *(s for s in allowed if s != destination)]
        curated[labeled.index] = destination

    _balance(files, frame[frame["labeled"]], curated, choices, labeled_splits, counted=~bound)
    return curated


def _balance(files: pd.DataFrame, labeled: pd.DataFrame, curated: pd.Series, choices: dict[int, list[str]],
             labeled_splits: list[str], counted: np.ndarray) -> None:
    """Move whole sets of labeled files between the splits each may go to while a move brings the splits closer to
    the input's sizes and class shares, over the `counted` rows (the best move first; of equal gains, the one moving
    fewer files). `curated` is changed in place."""
    labeled_rows = files[Col.LABEL].notna().to_numpy() & counted
    balance = _Balance(files.loc[labeled_rows, Col.SPLIT], curated[labeled_rows], files.loc[labeled_rows, Col.LABEL],
                       labeled_splits)
    movable = {number: choices[number] for number in choices if len(choices[number]) > 1}
    label_counts = {number: balance.by_class(part[Col.LABEL]) for number, part in labeled.groupby("set")
                    if number in movable}
    members = {number: part.index for number, part in labeled.groupby("set") if number in movable}
    for _ in range(MAX_BALANCING_MOVES):
        best = None
        for number, options in movable.items():
            source = curated[members[number][0]]
            for target in options:
                if target == source:
                    continue
                gain = balance.gain(label_counts[number], source, target)
                if gain > 1e-9 and (best is None or (gain, -len(members[number])) > best[0]):
                    best = ((gain, -len(members[number])), number, source, target)
        if best is None:
            return
        _, number, source, target = best
        balance.move(label_counts[number], source, target)
        curated[members[number]] = target
