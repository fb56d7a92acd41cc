"""Score a Curate-style manifest against the benchmark's ground truth. Pure functions over DataFrames.

The manifest needs the columns ``path``, ``split``, ``label``, ``dup_group`` (nullable int), ``issues`` (list of
strings) and ``action``; the truth is :class:`bench.dataset.GroundTruth`'s two tables. Paths must already be
comparable (absolute and resolved the same way on both sides).

Duplicate pairs: the prediction is every unordered pair of rows sharing a non-null ``dup_group``. A predicted pair
counts as correct when both files lie in one true group (the connected closure of the injected and natural pairs),
so grouping A with C because A~B and B~C is not penalised. Recall is measured on the listed true pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

import pandas as pd

Pair = frozenset[str]

# Issue name in the manifest -> ground-truth file kinds that should carry it.
ISSUE_TRUTH: dict[str, tuple[str, ...]] = {
    "blurry": ("blurry",),
    "dark": ("dark",),
    "bright": ("bright",),
    "corrupt": ("corrupt",),
    "outlier": ("ood",),
}


def _ratio(num: int, den: int) -> float | None:
    """Return num/den, or None when the ratio is undefined (nothing predicted, or nothing to find)."""
    return num / den if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None or precision + recall == 0:
        return None
    return 2 * precision * recall / (precision + recall)


def predicted_pairs(manifest: pd.DataFrame) -> set[Pair]:
    """Return every unordered pair of paths that share a non-null ``dup_group``."""
    grouped = manifest.dropna(subset=["dup_group"]).groupby("dup_group")["path"]
    return {frozenset(p) for _, paths in grouped for p in combinations(sorted(set(paths)), 2)}


def group_ids(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return each path's connected-component representative over ``pairs`` (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees flat
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def duplicate_scores(manifest: pd.DataFrame, truth_pairs: pd.DataFrame) -> dict:
    """Return duplicate-pair precision, recall and F1 overall, recall per transform (``natural`` included), and
    the wrong and the missed pairs themselves, for reading."""
    predicted = predicted_pairs(manifest)
    group = group_ids(zip(truth_pairs["a"], truth_pairs["b"]))
    false_pairs = sorted(sorted(p) for p in predicted
                         if not all(x in group for x in p) or len({group[x] for x in p}) > 1)
    correct = len(predicted) - len(false_pairs)
    found = [frozenset((a, b)) in predicted for a, b in zip(truth_pairs["a"], truth_pairs["b"])]
    missed = truth_pairs.loc[[not f for f in found], ["a", "b", "transform"]]
    precision, recall = _ratio(correct, len(predicted)), _ratio(sum(found), len(found))
    by = pd.DataFrame({"transform": truth_pairs["transform"], "found": found})
    # Natural overlaps come as natural:<kind>; also report them together, and the injected copies together.
    is_natural = by["transform"].str.startswith("natural:")
    per_transform = (pd.concat([by, by[is_natural].assign(transform="natural"),
                                by[~is_natural].assign(transform="injected")])
                     .groupby("transform")["found"].agg(["sum", "count"]))
    return {
        "predicted_pairs": len(predicted), "correct_pairs": correct, "true_pairs": len(found),
        "precision": precision, "recall": recall, "f1": _f1(precision, recall),
        "recall_by_transform": {t: {"found": int(r["sum"]), "total": int(r["count"]),
                                    "recall": _ratio(int(r["sum"]), int(r["count"]))}
                                for t, r in per_transform.iterrows()},
        "false_pairs": false_pairs,
        "missed_pairs": missed.values.tolist(),
    }


def _flagged(manifest: pd.DataFrame, issue: str) -> set[str]:
    """Return the paths whose ``issues`` list contains ``issue`` (a missing list means no issue)."""
    return {path for path, issues in zip(manifest["path"], manifest["issues"])
            if issues is not None and not isinstance(issues, float) and issue in list(issues)}


def _precision_recall(flagged: set[str], truth: set[str], correct: set[str] | None = None) -> dict:
    """Score a flagged set; ``correct`` (default ``truth``) is what may be flagged without being a false alarm."""
    correct = truth if correct is None else correct
    tp_precision, tp_recall = len(flagged & correct), len(flagged & truth)
    return {"flagged": len(flagged), "true": len(truth), "found": tp_recall,
            "precision": _ratio(tp_precision, len(flagged)), "recall": _ratio(tp_recall, len(truth))}


def issue_scores(manifest: pd.DataFrame, files: pd.DataFrame) -> dict[str, dict]:
    """Return precision and recall of each issue in :data:`ISSUE_TRUTH` against the files' true kinds."""
    return {issue: _precision_recall(_flagged(manifest, issue), set(files.loc[files["kind"].isin(kinds), "path"]))
            for issue, kinds in ISSUE_TRUTH.items()}


def _spanning_groups(files: pd.DataFrame, truth_pairs: pd.DataFrame, column: str) -> set[str]:
    """Return the paths in true groups whose members take two or more distinct non-null ``column`` values."""
    group = group_ids(zip(truth_pairs["a"], truth_pairs["b"]))
    values = files.set_index("path")[column]
    members: dict[str, set[str]] = {}
    for path, root in group.items():
        members.setdefault(root, set()).add(path)
    return {p for paths in members.values() if values.reindex(list(paths)).dropna().nunique() > 1 for p in paths}


def leak_scores(manifest: pd.DataFrame, files: pd.DataFrame, truth_pairs: pd.DataFrame) -> dict[str, dict]:
    """Return recall (and precision) of ``split_leak`` and ``label_conflict``.

    Recall: every file of a true pair that crosses splits (resp. carries two labels) should be flagged. Precision:
    a flag is right when the file's true group spans several splits (resp. labels), closure included.
    """
    out = {}
    for issue, pair_column, file_column in (("split_leak", "cross_split", "split"),
                                            ("label_conflict", "label_conflict", "label")):
        hits = truth_pairs[truth_pairs[pair_column].astype(bool)]
        truth = set(hits["a"]) | set(hits["b"])
        out[issue] = _precision_recall(_flagged(manifest, issue), truth,
                                       correct=_spanning_groups(files, truth_pairs, file_column))
    return out


def clean_keep_share(manifest: pd.DataFrame, files: pd.DataFrame, truth_pairs: pd.DataFrame) -> dict:
    """Return the share of clean, unique originals (no injected relative, no natural overlap) kept.

    A clean file missing from the manifest counts as not kept.
    """
    related = set(truth_pairs["a"]) | set(truth_pairs["b"])
    clean = set(files.loc[files["kind"] == "original", "path"]) - related
    kept = set(manifest.loc[manifest["action"] == "keep", "path"]) & clean
    return {"clean": len(clean), "kept": len(kept), "share": _ratio(len(kept), len(clean))}


def score_manifest(manifest: pd.DataFrame, files: pd.DataFrame, truth_pairs: pd.DataFrame) -> dict:
    """Return every benchmark score for one manifest, as a JSON-ready dict."""
    return {
        "rows": len(manifest),
        "duplicates": duplicate_scores(manifest, truth_pairs),
        "issues": issue_scores(manifest, files),
        "leaks": leak_scores(manifest, files, truth_pairs),
        "clean_keep": clean_keep_share(manifest, files, truth_pairs),
    }
