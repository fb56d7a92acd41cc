"""Tests of the benchmark's scoring functions on hand-made manifests (no images, no fastdup)."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.score import (
    clean_keep_share,
    duplicate_scores,
    group_ids,
    issue_scores,
    leak_scores,
    predicted_pairs,
    score_manifest,
)


def _files() -> pd.DataFrame:
    rows = [
        ("/d/train/a/o1.jpg", "train", "a", "original"),
        ("/d/val/a/c1.jpg", "val", "a", "copy"),       # copy of o1 in another split: a leak
        ("/d/train/a/o2.jpg", "train", "a", "original"),
        ("/d/train/b/c2.jpg", "train", "b", "copy"),   # copy of o2 under another class: a conflict
        ("/d/train/a/n1.jpg", "train", "a", "original"),
        ("/d/train/a/n2.jpg", "train", "a", "original"),  # n1~n2 and n2~n3: natural overlaps
        ("/d/unlabeled/n3.jpg", "unlabeled", None, "original"),
        ("/d/train/a/u1.jpg", "train", "a", "original"),  # clean, unique
        ("/d/train/a/u2.jpg", "train", "a", "original"),  # clean, unique
        ("/d/train/a/blur.jpg", "train", "a", "blurry"),
        ("/d/train/a/bad.jpg", "train", "a", "corrupt"),
        ("/d/unlabeled/cat.jpg", "unlabeled", None, "ood"),
    ]
    return pd.DataFrame(rows, columns=["path", "split", "label", "kind"])


def _pairs() -> pd.DataFrame:
    return pd.DataFrame([
        ("/d/val/a/c1.jpg", "/d/train/a/o1.jpg", "exact", True, False),
        ("/d/train/b/c2.jpg", "/d/train/a/o2.jpg", "rot90", False, True),
        ("/d/train/a/n1.jpg", "/d/train/a/n2.jpg", "natural:shifted", False, False),
        ("/d/train/a/n2.jpg", "/d/unlabeled/n3.jpg", "natural:zoom2x", True, False),
    ], columns=["a", "b", "transform", "cross_split", "label_conflict"])


def _manifest(groups: dict[str, int], issues: dict[str, list[str]] | None = None,
              actions: dict[str, str] | None = None) -> pd.DataFrame:
    files = _files()
    issues, actions = issues or {}, actions or {}
    return pd.DataFrame({
        "path": files["path"], "split": files["split"], "label": files["label"],
        "dup_group": pd.array([groups.get(p) for p in files["path"]], dtype="Int64"),
        "issues": [issues.get(p, []) for p in files["path"]],
        "action": [actions.get(p, "keep") for p in files["path"]],
    })


def test_predicted_pairs_are_all_pairs_within_a_group() -> None:
    manifest = _manifest({"/d/train/a/n1.jpg": 7, "/d/train/a/n2.jpg": 7, "/d/unlabeled/n3.jpg": 7})
    assert predicted_pairs(manifest) == {
        frozenset(("/d/train/a/n1.jpg", "/d/train/a/n2.jpg")),
        frozenset(("/d/train/a/n1.jpg", "/d/unlabeled/n3.jpg")),
        frozenset(("/d/train/a/n2.jpg", "/d/unlabeled/n3.jpg")),
    }


def test_group_ids_follow_transitive_closure() -> None:
    group = group_ids([("x", "y"), ("y", "z"), ("p", "q")])
    assert group["x"] == group["y"] == group["z"]
    assert group["p"] == group["q"] != group["x"]


def test_closure_pair_is_not_a_false_positive() -> None:
    # n1 and n3 were never listed as a pair, but n1~n2~n3: grouping all three is right.
    manifest = _manifest({"/d/train/a/n1.jpg": 1, "/d/train/a/n2.jpg": 1, "/d/unlabeled/n3.jpg": 1})
    scores = duplicate_scores(manifest, _pairs())
    assert scores["predicted_pairs"] == 3
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["recall_by_transform"]["natural"] == {"found": 2, "total": 2, "recall": 1.0}
    assert scores["recall_by_transform"]["natural:zoom2x"]["recall"] == 1.0
    assert scores["recall_by_transform"]["exact"]["recall"] == 0.0
    assert scores["recall_by_transform"]["injected"] == {"found": 0, "total": 2, "recall": 0.0}


def test_wrong_group_costs_precision() -> None:
    # c1-o1 is right; u1 and u2 are distinct scenes wrongly grouped.
    manifest = _manifest({"/d/val/a/c1.jpg": 1, "/d/train/a/o1.jpg": 1, "/d/train/a/u1.jpg": 2,
                          "/d/train/a/u2.jpg": 2})
    scores = duplicate_scores(manifest, _pairs())
    assert scores["precision"] == 0.5
    assert scores["recall"] == 0.25
    assert scores["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert scores["false_pairs"] == [["/d/train/a/u1.jpg", "/d/train/a/u2.jpg"]]
    assert [row[2] for row in scores["missed_pairs"]] == ["rot90", "natural:shifted", "natural:zoom2x"]


def test_no_prediction_leaves_precision_undefined() -> None:
    scores = duplicate_scores(_manifest({}), _pairs())
    assert scores["precision"] is None
    assert scores["recall"] == 0.0
    assert scores["f1"] is None


def test_issue_precision_and_recall() -> None:
    manifest = _manifest({}, issues={"/d/train/a/blur.jpg": ["blurry"], "/d/train/a/u1.jpg": ["blurry"],
                                     "/d/train/a/bad.jpg": ["corrupt"], "/d/unlabeled/cat.jpg": ["outlier"]})
    scores = issue_scores(manifest, _files())
    assert scores["blurry"] == {"flagged": 2, "true": 1, "found": 1, "precision": 0.5, "recall": 1.0}
    assert scores["corrupt"]["precision"] == scores["corrupt"]["recall"] == 1.0
    assert scores["outlier"]["recall"] == 1.0
    assert scores["dark"]["precision"] is None and scores["dark"]["recall"] is None  # nothing to find


def test_issues_accept_arrays_and_missing_lists() -> None:
    # Parquet gives numpy arrays back; a row may also hold None.
    import numpy as np

    manifest = _manifest({})
    manifest["issues"] = [np.array(["corrupt"]) if p.endswith("bad.jpg") else None for p in manifest["path"]]
    assert issue_scores(manifest, _files())["corrupt"]["recall"] == 1.0


def test_split_leak_and_label_conflict_recall() -> None:
    manifest = _manifest({}, issues={
        "/d/val/a/c1.jpg": ["split_leak"], "/d/train/a/o1.jpg": ["split_leak"],
        "/d/train/a/n1.jpg": ["split_leak"],  # n1 is not in a cross-split pair, but its group spans two splits
        "/d/train/a/u1.jpg": ["split_leak"],  # unique: a false alarm
        "/d/train/b/c2.jpg": ["label_conflict"],
    })
    scores = leak_scores(manifest, _files(), _pairs())
    # true leak files: c1, o1 (exact pair) and n2, n3 (natural pair across splits)
    assert scores["split_leak"]["true"] == 4
    assert scores["split_leak"]["recall"] == 0.5
    assert scores["split_leak"]["precision"] == 0.75
    assert scores["label_conflict"]["recall"] == 0.5
    assert scores["label_conflict"]["precision"] == 1.0


def test_clean_keep_share_counts_only_unrelated_originals() -> None:
    manifest = _manifest({}, actions={"/d/train/a/u2.jpg": "review", "/d/train/a/o1.jpg": "drop"})
    assert clean_keep_share(manifest, _files(), _pairs()) == {"clean": 2, "kept": 1, "share": 0.5}
    missing = _manifest({}).query("path != '/d/train/a/u1.jpg'")
    assert clean_keep_share(missing, _files(), _pairs())["kept"] == 1


def test_score_manifest_has_every_section() -> None:
    scores = score_manifest(_manifest({}), _files(), _pairs())
    assert set(scores) == {"rows", "duplicates", "issues", "leaks", "clean_keep"}
    assert scores["rows"] == len(_files())
