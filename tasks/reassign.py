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
    """The curated splits' labeled files counted by class (a split x class array), and how far they stray from the
    input's counts."""

    def __init__(self, given: pd.Series, curated: pd.Series, labels: pd.Series, splits: Iterable[str]) -> None:
        target = pd.crosstab(given, labels).reindex(index=list(splits), fill_value=0)
        self.splits, self.classes = list(target.index), list(target.columns)
        self.target = target.to_numpy(float)
        self.counts = pd.crosstab(curated, labels).reindex(index=self.splits, columns=self.classes,
                                                           fill_value=0).to_numpy(float, copy=True)
        self.wanted = np.maximum(self.target.sum(axis=1), 1.0)

    def stray(self, counts: np.ndarray, split: np.ndarray) -> np.ndarray:
        """How far beyond the tolerances splits with these class `counts` (rows) lie, for the split each row is
        (indices): their size, and each class's count, off the input's by more than the tolerance, as shares of the
        input's size. (Counts, not shares: a split being filled again from nothing gets closer with each set it
        receives, where its class shares would swing.) A class the split held and holds no more weighs most:
        evaluating without it is not evaluating it."""
        target, wanted = self.target[split], self.wanted[split]
        size = np.maximum(0.0, np.abs(counts.sum(axis=1) - target.sum(axis=1)) / wanted - SIZE_TOLERANCE)
        classes = np.maximum(0.0, np.abs(counts - target) / wanted[:, None] - CLASS_TOLERANCE).sum(axis=1)
        return size + classes + ((target > 0) & (counts == 0)).sum(axis=1)

    def gains(self, moved: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """How much closer to the tolerances each move (class counts `moved`, rows, from split `source` to split
        `target`) brings its two splits (positive: closer)."""
        before = self.stray(self.counts[source], source) + self.stray(self.counts[target], target)
        after = self.stray(self.counts[source] - moved, source) + self.stray(self.counts[target] + moved, target)
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
    index = {split: position for position, split in enumerate(balance.splits)}
    sets = {number: part for number, part in labeled.groupby("set") if len(choices.get(number, [])) > 1}
    # Every move a set may make: (set, target split) with the set's class counts and size.
    options = [(number, index[target]) for number, part in sets.items() for target in choices[number]]
    if not options:
        return
    number_of, target_of = (np.array(column) for column in zip(*options))
    per_set = pd.crosstab(labeled["set"], labeled[Col.LABEL]).reindex(columns=balance.classes, fill_value=0)
    moved = per_set.loc[number_of].to_numpy(float)
    source = np.array([index[curated[sets[number].index[0]]] for number in number_of])  # where each set is now
    size = moved.sum(axis=1)
    for _ in range(MAX_BALANCING_MOVES):
        gains = np.where(source != target_of, balance.gains(moved, source, target_of), 0.0)
        # The best gain; of equal gains, the move of fewer files.
        best = int(np.lexsort((size, -np.round(gains, 9)))[0])
        if gains[best] <= 1e-9:
            return
        number, target = number_of[best], target_of[best]
        balance.counts[source[best]] -= moved[best]
        balance.counts[target] += moved[best]
        source[number_of == number] = target
        curated[sets[number].index] = balance.splits[target]
