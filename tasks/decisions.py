"""Decisions: from issues and relations to one action per file, with its reason.

The rule (README, "What it decides"): of a set of duplicates (`dup_group`) exactly one file is kept
(`choose_keepers`); overlapping files are all kept; a file of a training split (any split not in
`decisions.evaluation_splits`) that shares ground with a kept evaluation file is a leak, resolved on the training
side (`decisions.split_leak`: drop or review) and named in `leaks_into`; then the issues in `decisions.drop` and
`decisions.review`. Every file dropped as a copy names the file it yields to in `duplicate_of`.
"""

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from tasks.config import DecisionsConfig
from tasks.reassign import reassign_splits
from tasks.schema import Action, Col, Issue, PairCol

REASSIGN = "reassign"  # decisions.split_leak: every set of shared ground wholly in one split
ENGINE_ERROR = "engine_error"  # why the similarity engine could not read a file Pillow decodes (evidence only)


def choose_keepers(files: pd.DataFrame, flags: pd.DataFrame, decisions: DecisionsConfig) -> pd.Series:
    """Row of the kept member of each duplicate set (index: set id). In order of preference: a file without a
    dropped quality issue; an evaluation split (decisions.evaluation_splits, in their order); labeled over
    unlabeled; more pixels; more bytes; then the first path in sort order."""
    members = files.iloc[np.flatnonzero(files[Col.DUP_GROUP].notna().to_numpy(dtype=bool))]
    dropped_issues = [issue.value for issue in decisions.drop]
    evaluation_rank = {split: rank for rank, split in enumerate(decisions.evaluation_splits)}
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


def split_rank(splits: pd.Series, preferred: tuple[str, ...]) -> np.ndarray:
    """Each split's place in `preferred` (0 first), -1 for the splits it does not name."""
    rank = {split: place for place, split in enumerate(preferred)}
    return splits.map(lambda split: rank.get(split, -1)).to_numpy()


def leak_targets(files: pd.DataFrame, relations: pd.DataFrame, kept: pd.Series, keeper_row: pd.Series,
                 rank: np.ndarray, exposed: np.ndarray) -> pd.Series:
    """For each `exposed` file, the path of a kept file of a protected split (`rank` >= 0, its place in order of
    preference) whose ground it shows; NA otherwise: a training file's leak into an evaluation split.

    `kept` says which files are kept whatever the leaks (leaks never drop a protected file), and `keeper_row`
    each duplicate's kept copy. A protected file holds its ground when it is kept; one dropped as a copy of a kept
    protected file leaves its ground there, with that copy. A file sent to review holds none until a reviewer keeps
    it: the curated split does not hold it meanwhile. Of several, the most preferred split's, then the first by
    path."""
    rows = files.index.to_numpy()
    evaluation, kept = rank >= 0, kept.to_numpy(dtype=bool)
    holder = pd.Series(np.where(evaluation & kept, rows, -1), index=files.index)
    keeper = keeper_row.to_numpy(dtype="float64", na_value=np.nan)
    via_keeper = evaluation & ~kept & ~np.isnan(keeper)
    keepers = pd.Series(keeper[via_keeper].astype(np.int64))
    holds = (keepers.map(holder).to_numpy() == keepers.to_numpy())  # that keeper is itself a kept evaluation file
    holder.iloc[np.flatnonzero(via_keeper)[holds]] = keepers.to_numpy()[holds]

    ends = pd.DataFrame({"row": np.concatenate([relations[PairCol.ROW_A], relations[PairCol.ROW_B]]),
                         "other": np.concatenate([relations[PairCol.ROW_B], relations[PairCol.ROW_A]])})
    ends["holder"] = holder.reindex(ends["other"]).to_numpy()
    position = pd.Series(np.arange(len(rows)), index=rows)
    leaking = ends[(ends["holder"] >= 0) & exposed[position.reindex(ends["row"]).to_numpy()]]
    leaking = leaking.assign(rank=rank[position.reindex(leaking["holder"]).to_numpy()],
                             path=files[Col.PATH].reindex(leaking["holder"].to_numpy()).to_numpy())
    first = leaking.sort_values(["row", "rank", "path"]).drop_duplicates("row")
    targets = pd.Series(pd.NA, index=files.index, dtype="string")
    targets[first["row"].to_numpy()] = first["path"].to_numpy()
    return targets


def _issue_text(flags: pd.DataFrame, chosen: frozenset[Issue]) -> pd.Series:
    """Comma-separated names of the chosen issues each row has, in vocabulary order."""
    text = pd.Series("", index=flags.index, dtype="string")
    for issue in Issue:
        if issue in chosen:
            text = text + np.where(flags[issue.value], issue.value + ", ", "")
    return text.str.removesuffix(", ")


def decide(files: pd.DataFrame, relations: pd.DataFrame, flags: pd.DataFrame, decisions: DecisionsConfig,
           overrides: Mapping[str, Action] | None = None) -> pd.DataFrame:
    """Action, reason, duplicate_of, leaks_into and curated_split for every row (`files` indexed by row, with
    `dup_group`): corrupt > copy of a kept duplicate > dropped issue > split leak > reviewed issue > keep. Under
    `decisions.split_leak: reassign`, the curated splits come from `tasks.reassign` first. A reviewer's
    `overrides` (path -> keep or drop) decide which evaluation files hold their ground (`leak_targets`); they are
    applied to the rows themselves afterwards (`tasks.overrides.apply_overrides`)."""
    keepers = choose_keepers(files, flags, decisions)
    keeper_row = files[Col.DUP_GROUP].map(keepers).astype("Int64")
    is_copy = (keeper_row.notna() & (keeper_row != files.index.to_series())).fillna(False).astype(bool)
    duplicate_of = pd.Series(pd.NA, index=files.index, dtype="string")
    duplicate_of[is_copy] = files[Col.PATH].reindex(keeper_row[is_copy].to_numpy()).to_numpy()

    corrupt = ~files[Col.VALID]
    dropped = flags[[issue.value for issue in decisions.drop]].any(axis=1)
    reviewed = flags[[issue.value for issue in decisions.review]].any(axis=1)
    decided = files[Col.PATH].map(overrides or {})
    kept = ((~(corrupt | is_copy | dropped | reviewed) & decided.isna()) | (decided == Action.KEEP)) & files[Col.VALID]
    curated = reassign_splits(files, relations, decisions) if decisions.split_leak == REASSIGN else files[Col.SPLIT]
    evaluation = split_rank(curated, decisions.evaluation_splits)
    leaks_into = leak_targets(files, relations, kept, keeper_row, evaluation, evaluation < 0)
    if decisions.split_leak == REASSIGN:
        # Fixed splits keep their files, and any other file that shares their ground yields to them.
        fixed = split_rank(files[Col.SPLIT], decisions.fixed_splits)
        leaks_into = leak_targets(files, relations, kept, keeper_row, fixed, fixed < 0).fillna(leaks_into)
    leaking = leaks_into.notna()
    is_keeper = files[Col.DUP_GROUP].notna() & ~is_copy
    conditions = [corrupt, is_copy, dropped, leaking, reviewed, is_keeper]
    leak_action = Action.REVIEW if decisions.split_leak == Action.REVIEW.value else Action.DROP
    actions = np.select(conditions, [Action.DROP, Action.DROP, Action.DROP, leak_action, Action.REVIEW, Action.KEEP],
                        default=Action.KEEP)
    # Each reason is written only for the rows it explains (the first condition that holds, as for the actions):
    # building every reason for every row would make millions of strings to throw away.
    explain: list[Callable[[np.ndarray], pd.Series]] = [
        lambda rows: "corrupt: " + files[Col.ERROR].iloc[rows].fillna("unreadable"),
        lambda rows: "duplicate of " + duplicate_of.iloc[rows].fillna(""),
        lambda rows: "drop: " + _issue_text(flags.iloc[rows], decisions.drop),
        lambda rows: "split leak: shares ground with " + leaks_into.iloc[rows].fillna(""),
        lambda rows: "review: " + _issue_text(flags.iloc[rows], decisions.review),
        lambda rows: "kept copy of duplicate set " + files[Col.DUP_GROUP].iloc[rows].astype("string").fillna(""),
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
            Col.LEAKS_INTO: leaks_into,
            Col.CURATED_SPLIT: pd.array(curated.astype(str), dtype="string"),
        },
        index=files.index,
    )
