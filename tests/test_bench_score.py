"""Tests of the benchmark's scoring functions on hand-made manifests and pairs (no images, no fastdup)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.run_quality import decision_list, markdown_table, recorded_duplicate_share
from bench.score import (
    clean_keep_share,
    detection_scores,
    duplicate_set_scores,
    group_ids,
    issue_scores,
    leak_decision_scores,
    leak_flag_scores,
    overlap_keep_scores,
    pairs_from_groups,
    predicted_relations,
    relation_scores,
    score_manifest,
    truth_relations,
)

O1, C1 = "/d/train/a/o1.jpg", "/d/val/a/c1.jpg"  # c1: exact copy of o1 in another split (a leak)
O2, C2 = "/d/train/a/o2.jpg", "/d/train/b/c2.jpg"  # c2: o2 turned 90 degrees under another class (a conflict)
O3, C3 = "/d/train/a/o3.jpg", "/d/train/a/c3.jpg"  # c3: a crop of o3 keeping 0.7 of it
N1, N2, N3 = "/d/train/a/n1.jpg", "/d/train/a/n2.jpg", "/d/unlabeled/n3.jpg"  # n1~n2 shifted, n2~n3 zoom2x
U1, U2 = "/d/train/a/u1.jpg", "/d/train/a/u2.jpg"  # clean, unique
BLUR, BAD, CAT = "/d/train/a/blur.jpg", "/d/train/a/bad.jpg", "/d/unlabeled/cat.jpg"


def _files() -> pd.DataFrame:
    rows = [
        (O1, "train", "a", "original", "a/o1.jpg", {}),
        (C1, "val", "a", "copy", "a/o1.jpg", {"transform": "exact"}),
        (O2, "train", "a", "original", "a/o2.jpg", {}),
        (C2, "train", "b", "copy", "a/o2.jpg", {"transform": "rot90", "degrees": 90}),
        (O3, "train", "a", "original", "a/o3.jpg", {}),
        (C3, "train", "a", "copy", "a/o3.jpg", {"transform": "crop", "area": 0.7}),
        (N1, "train", "a", "original", "a/n1.jpg", {}),
        (N2, "train", "a", "original", "a/n2.jpg", {}),
        (N3, "unlabeled", None, "original", "a/n3.jpg", {}),
        (U1, "train", "a", "original", "a/u1.jpg", {}),
        (U2, "train", "a", "original", "a/u2.jpg", {}),
        (BLUR, "train", "a", "blurry", "a/b.jpg", {"radius": 6.0}),
        (BAD, "train", "a", "corrupt", "", {"corrupt_kind": "zero_byte"}),
        (CAT, "unlabeled", None, "ood", "skimage.data.chelsea", {}),
    ]
    return pd.DataFrame([(p, s, lab, k, src, json.dumps(par)) for p, s, lab, k, src, par in rows],
                        columns=["path", "split", "label", "kind", "source", "params"])


def _truth_pairs() -> pd.DataFrame:
    return pd.DataFrame([
        (C1, O1, "exact", True, False),
        (C2, O2, "rot90", False, True),
        (C3, O3, "crop", False, False),
        (N1, N2, "natural:shifted", False, False),
        (N2, N3, "natural:zoom2x", True, False),
    ], columns=["a", "b", "transform", "cross_split", "label_conflict"])


def _overlaps() -> pd.DataFrame:
    return pd.DataFrame([("a/n1.jpg", "a/n2.jpg", "shifted", 0.9), ("a/n2.jpg", "a/n3.jpg", "zoom2x", 1.0)],
                        columns=["a", "b", "kind", "shared"])


def _truth(duplicate_share: float = 0.75) -> pd.DataFrame:
    return truth_relations(_files(), _truth_pairs(), _overlaps(), duplicate_share)


def _pairs(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["path_a", "path_b", "relation"])


def _manifest(groups: dict[str, int] | None = None, issues: dict[str, list[str]] | None = None,
              actions: dict[str, str] | None = None, leaks_into: dict[str, str] | None = None,
              duplicate_of: dict[str, str] | None = None) -> pd.DataFrame:
    files = _files()
    groups, issues, actions = groups or {}, issues or {}, actions or {}
    leaks_into, duplicate_of = leaks_into or {}, duplicate_of or {}
    return pd.DataFrame({
        "path": files["path"], "split": files["split"], "label": files["label"],
        "dup_group": pd.array([groups.get(p) for p in files["path"]], dtype="Int64"),
        "issues": [issues.get(p, []) for p in files["path"]],
        "action": [actions.get(p, "keep") for p in files["path"]],
        "duplicate_of": pd.array([duplicate_of.get(p) for p in files["path"]], dtype="string"),
        "leaks_into": pd.array([leaks_into.get(p) for p in files["path"]], dtype="string"),
    })


ALL_FOUND = _pairs((O1, C1, "exact"), (O2, C2, "duplicate"), (O3, C3, "overlap"), (N1, N2, "duplicate"),
                   (N2, N3, "overlap"))


# --- Truth relations ---------------------------------------------------------------------------------------------


def test_truth_shares_of_each_kind() -> None:
    truth = _truth().set_index("transform")
    assert truth.loc["exact", ["share_a", "share_b", "relation"]].tolist() == [1.0, 1.0, "exact"]
    assert truth.loc["rot90", ["share_a", "share_b", "relation"]].tolist() == [1.0, 1.0, "duplicate"]
    assert truth.loc["crop", ["share_a", "share_b"]].tolist() == [1.0, 0.7]  # a is the crop, b the original
    assert truth.loc["natural:shifted", ["share_a", "share_b", "relation"]].tolist() == [0.9, 0.9, "duplicate"]
    # zoom2x: b (the zoom) shows `shared` of itself, a quarter of that of a
    assert truth.loc["natural:zoom2x", ["share_a", "share_b", "relation"]].tolist() == [0.25, 1.0, "overlap"]
    assert truth.loc["natural:zoom2x", ["split_a", "split_b"]].tolist() == ["train", "unlabeled"]


def test_crop_of_area_0_7_is_an_overlap_under_0_75_and_a_duplicate_under_0_65() -> None:
    assert _truth(0.75).set_index("transform").at["crop", "relation"] == "overlap"
    assert _truth(0.65).set_index("transform").at["crop", "relation"] == "duplicate"


def test_unknown_transform_has_no_true_relation() -> None:
    pairs = pd.concat([_truth_pairs(), pd.DataFrame([(U1, U2, "heldout:sepia", False, False)],
                                                    columns=_truth_pairs().columns)], ignore_index=True)
    truth = truth_relations(_files(), pairs, _overlaps())
    assert pd.isna(truth["relation"].iloc[-1]) and np.isnan(truth["min_share"].iloc[-1])
    assert relation_scores(ALL_FOUND, truth)["unknown"] == 1


# --- Detection ---------------------------------------------------------------------------------------------------


def test_every_pair_found_and_right() -> None:
    scores = detection_scores(ALL_FOUND, _truth())
    assert (scores["precision"], scores["recall"], scores["found_pairs"]) == (1.0, 1.0, 5)
    assert scores["false_pairs"] == [] and scores["missed_pairs"] == []


def test_missed_pair_lowers_recall() -> None:
    scores = detection_scores(_pairs((O1, C1, "exact"), (O2, C2, "duplicate"), (N1, N2, "duplicate")), _truth())
    assert scores["recall"] == pytest.approx(3 / 5)
    assert scores["precision"] == 1.0
    assert [row[2] for row in scores["missed_pairs"]] == ["crop", "natural:zoom2x"]
    assert scores["recall_by_transform"]["crop"] == {"found": 0, "total": 1, "recall": 0.0}
    assert scores["recall_by_transform"]["injected"] == {"found": 2, "total": 3, "recall": pytest.approx(2 / 3)}
    assert scores["recall_by_transform"]["natural"] == {"found": 1, "total": 2, "recall": 0.5}


def test_truth_closure_pair_is_not_a_false_positive() -> None:
    # n1 and n3 were never listed as a pair, but n1~n2~n3: relating n1 with n3 is right.
    scores = detection_scores(_pairs((N1, N3, "overlap")), _truth())
    assert scores["predicted_pairs"] == 1 and scores["precision"] == 1.0
    assert scores["recall"] == 0.0


def test_exact_star_is_closed_into_every_pair_of_its_set() -> None:
    # A same-bytes set {o1, c1, x} recorded as a star from x: o1~c1 is found through the closure.
    x = "/d/train/a/x.jpg"
    predicted = predicted_relations(_pairs((x, O1, "exact"), (x, C1, "exact")))
    assert predicted[frozenset((O1, C1))] == "exact"
    truth = pd.concat([_truth(), pd.DataFrame([{"a": x, "b": O1, "transform": "exact", "relation": "exact"}])],
                      ignore_index=True)
    scores = detection_scores(_pairs((x, O1, "exact"), (x, C1, "exact")), truth)
    assert scores["predicted_pairs"] == 3 and scores["precision"] == 1.0
    assert scores["recall_by_transform"]["exact"] == {"found": 2, "total": 2, "recall": 1.0}


def test_wrong_pair_costs_precision_and_is_listed() -> None:
    scores = detection_scores(_pairs((O1, C1, "exact"), (U2, U1, "overlap")), _truth())
    assert scores["precision"] == 0.5
    assert scores["f1"] == pytest.approx(2 * 0.5 * 0.2 / 0.7)
    assert scores["false_pairs"] == [[U1, U2]]


def test_no_prediction_leaves_precision_undefined() -> None:
    scores = detection_scores(_pairs(), _truth())
    assert scores["precision"] is None and scores["recall"] == 0.0 and scores["f1"] is None


def test_relations_recorded_per_transform() -> None:
    scores = detection_scores(ALL_FOUND, _truth())
    assert scores["relations_by_transform"]["crop"] == {"exact": 0, "duplicate": 0, "overlap": 1}
    assert scores["relations_by_transform"]["natural"] == {"exact": 0, "duplicate": 1, "overlap": 1}


def test_pairs_from_groups_are_duplicates_within_each_group() -> None:
    pairs = pairs_from_groups(_manifest({N1: 7, N2: 7, N3: 7, U1: 8}))
    assert len(pairs) == 3
    assert predicted_relations(pairs) == {frozenset((N1, N2)): "duplicate", frozenset((N1, N3)): "duplicate",
                                          frozenset((N2, N3)): "duplicate"}
    assert pairs_from_groups(_manifest()).empty


def test_group_ids_follow_transitive_closure() -> None:
    group = group_ids([("x", "y"), ("y", "z"), ("p", "q")])
    assert group["x"] == group["y"] == group["z"]
    assert group["p"] == group["q"] != group["x"]


# --- Relations ---------------------------------------------------------------------------------------------------


def test_relation_confusion_and_borderline_mistakes() -> None:
    # The crop (true overlap, min share 0.7) recorded as a duplicate is borderline under 0.75; the zoom (true
    # overlap, min share 0.25) recorded as a duplicate is a clear mistake; the exact pair is missed.
    pairs = _pairs((O2, C2, "duplicate"), (O3, C3, "duplicate"), (N1, N2, "duplicate"), (N2, N3, "duplicate"))
    scores = relation_scores(pairs, _truth(), 0.75)
    assert scores["confusion"]["overlap"] == {"exact": 0, "duplicate": 2, "overlap": 0, "missed": 0}
    assert scores["confusion"]["exact"]["missed"] == 1
    assert (scores["found"], scores["correct"], scores["mistakes"]) == (4, 2, 2)
    assert (scores["borderline"], scores["clear_mistakes"]) == (1, 1)
    assert scores["accuracy"] == 0.5
    assert [m[2] for m in scores["mistaken_pairs"] if m[-1]] == ["crop"]


# --- Decisions ---------------------------------------------------------------------------------------------------


def test_duplicate_set_with_two_kept_files_is_reported() -> None:
    # True duplicate sets under 0.75: {c1, o1}, {c2, o2}, {n1, n2}; everything kept.
    scores = duplicate_set_scores(_manifest(), _truth())
    assert (scores["sets"], scores["one_kept"], scores["several_kept"], scores["none_kept"]) == (3, 0, 3, 0)
    assert sorted(scores["several_kept_sets"]) == sorted([sorted([C1, O1]), sorted([C2, O2]), [N1, N2]])


def test_duplicate_set_keeping_one_or_none() -> None:
    manifest = _manifest(actions={O1: "drop", C2: "drop", N1: "drop", N2: "drop"},
                         leaks_into={O1: C1}, duplicate_of={C2: O2}, issues={N2: ["blurry"]})
    scores = duplicate_set_scores(manifest, _truth())
    assert (scores["one_kept"], scores["none_kept"], scores["several_kept"]) == (2, 1, 0)
    assert scores["share_one_kept"] == pytest.approx(2 / 3) and scores["one_in_review"] == 0
    # n1 is dropped for no issue or leak: the set keeping none is not explained
    assert scores["none_kept_explained"] == 0
    assert scores["none_kept_sets"][0]["members"] == {N1: "drop", N2: "drop: blurry"}
    # A label conflict's kept copy goes to a person: the set keeps one file, in review.
    reviewed = duplicate_set_scores(_manifest(actions={O1: "drop", C2: "drop", N1: "drop", N2: "review"},
                                              leaks_into={O1: C1}, duplicate_of={C2: O2, N1: N2},
                                              issues={N2: ["label_conflict"]}), _truth())
    assert (reviewed["one_kept"], reviewed["none_kept"], reviewed["one_in_review"]) == (3, 0, 1)


def test_duplicate_set_of_training_files_leaking_into_val_may_keep_none() -> None:
    # x (train) is a JPEG copy of o1, whose exact copy c1 is in val: x and o1 both truly leak into c1.
    x = "/d/train/a/x.jpg"
    files = pd.concat([_files(), pd.DataFrame([{"path": x, "split": "train", "label": "a", "kind": "copy",
                                                "source": "a/o1.jpg", "params": "{}"}])], ignore_index=True)
    pairs = pd.concat([_truth_pairs(), pd.DataFrame([{"a": x, "b": O1, "transform": "jpeg", "cross_split": False,
                                                      "label_conflict": False}])], ignore_index=True)
    truth = truth_relations(files, pairs, _overlaps())
    manifest = pd.concat([_manifest(actions={O1: "drop"}, leaks_into={O1: C1}),
                          pd.DataFrame([{"path": x, "split": "train", "label": "a", "issues": [], "action": "drop",
                                         "duplicate_of": O1}])], ignore_index=True)
    scores = duplicate_set_scores(manifest, truth)
    assert scores["sets"] == 3  # {x, o1, c1} is one set: c1 is kept, so one kept
    assert scores["one_kept"] == 1
    # Without c1 in the set (its own pair recorded as an overlap), {x, o1} keeps none, explained by the true leak.
    truth.loc[truth["transform"] == "exact", "relation"] = "overlap"
    scores = duplicate_set_scores(manifest, truth)
    explained = [s for s in scores["none_kept_sets"] if x in s["members"]]
    assert explained and explained[0]["explained"]
    assert explained[0]["members"][x] == f"drop: duplicate of {O1} (truly leaks)"


def test_overlap_pairs_of_one_split_are_both_kept() -> None:
    # True overlaps under 0.75: c3~o3 (train, train) and n2~n3 (train, unlabeled: not of one split).
    assert overlap_keep_scores(_manifest(), _truth()) == {
        "pairs": 1, "both_kept": 1, "share_both_kept": 1.0, "not_both_kept_explained": 0, "not_both_kept": []}
    dropped = overlap_keep_scores(_manifest(actions={C3: "drop"}), _truth())
    assert dropped["share_both_kept"] == 0.0
    assert dropped["not_both_kept"] == [[C3, O3, "crop", "drop", "keep"]]
    # under 0.65 the crop is a duplicate: no overlap of one split is left
    assert overlap_keep_scores(_manifest(), _truth(0.65))["pairs"] == 0


def test_kept_train_file_beside_kept_val_file_is_a_leak() -> None:
    scores = leak_decision_scores(_manifest(), _truth())
    assert scores["pairs"] == 1 and scores["both_kept"] == 1
    assert scores["both_kept_pairs"] == [[O1, C1, "exact"]]


def test_dropped_train_file_names_the_val_file() -> None:
    named = leak_decision_scores(_manifest(actions={O1: "drop"}, leaks_into={O1: C1}), _truth())
    assert (named["both_kept"], named["training_not_kept"], named["names_evaluation_file"],
            named["names_this_file"]) == (0, 1, 1, 1)
    unnamed = leak_decision_scores(_manifest(actions={O1: "drop"}, duplicate_of={O1: U1}), _truth())
    assert unnamed["names_evaluation_file"] == 0 and unnamed["unnamed"] == [[O1, C1, "exact", U1]]


def test_manifest_without_decision_columns_is_scored() -> None:
    # fastdup's manifest has neither duplicate_of nor leaks_into.
    manifest = _manifest(actions={O1: "drop"}).drop(columns=["duplicate_of", "leaks_into"])
    scores = leak_decision_scores(manifest, _truth())
    assert scores["training_not_kept"] == 1 and scores["names_evaluation_file"] == 0


# --- Issues, flags, clean files ----------------------------------------------------------------------------------


def test_issue_precision_and_recall() -> None:
    manifest = _manifest(issues={BLUR: ["blurry"], U1: ["blurry"], BAD: ["corrupt"], CAT: ["outlier"]})
    scores = issue_scores(manifest, _files())
    assert scores["blurry"] == {"flagged": 2, "true": 1, "found": 1, "precision": 0.5, "recall": 1.0}
    assert scores["corrupt"]["precision"] == scores["corrupt"]["recall"] == 1.0
    assert scores["outlier"]["recall"] == 1.0
    assert scores["dark"]["precision"] is None and scores["dark"]["recall"] is None  # nothing to find


def test_issues_accept_arrays_and_missing_lists() -> None:
    # Parquet gives numpy arrays back; a row may also hold None.
    manifest = _manifest()
    manifest["issues"] = [np.array(["corrupt"]) if p == BAD else None for p in manifest["path"]]
    assert issue_scores(manifest, _files())["corrupt"]["recall"] == 1.0


def test_split_leak_uses_any_pair_and_label_conflict_duplicates_only() -> None:
    manifest = _manifest(issues={
        C1: ["split_leak"], O1: ["split_leak"],
        N1: ["split_leak"],  # n1 is in no cross-split pair, but its true group spans two splits
        U1: ["split_leak"],  # unique: a false alarm
        C2: ["label_conflict"],
    })
    scores = leak_flag_scores(manifest, _files(), _truth())
    # true leak files: c1, o1 (exact pair) and n2, n3 (zoom, an overlap: any relation counts)
    assert scores["split_leak"]["true"] == 4
    assert scores["split_leak"]["recall"] == 0.5
    assert scores["split_leak"]["precision"] == 0.75
    assert scores["label_conflict"]["true"] == 2
    assert scores["label_conflict"]["recall"] == 0.5
    assert scores["label_conflict"]["precision"] == 1.0


def test_label_conflict_ignores_overlaps() -> None:
    pairs = _truth_pairs()
    pairs.loc[pairs["transform"] == "crop", "label_conflict"] = True  # the crop (an overlap) under another class
    truth = truth_relations(_files(), pairs, _overlaps(), 0.75)
    assert leak_flag_scores(_manifest(), _files(), truth)["label_conflict"]["true"] == 2
    truth = truth_relations(_files(), pairs, _overlaps(), 0.65)  # now a duplicate: it counts
    assert leak_flag_scores(_manifest(), _files(), truth)["label_conflict"]["true"] == 4


def test_clean_keep_share_counts_only_unrelated_originals() -> None:
    manifest = _manifest(actions={U2: "review", O1: "drop"})
    assert clean_keep_share(manifest, _files(), _truth()) == {"clean": 2, "kept": 1, "share": 0.5}
    missing = _manifest().query("path != @U1")
    assert clean_keep_share(missing, _files(), _truth())["kept"] == 1


# --- The whole score and its table -------------------------------------------------------------------------------


def test_score_manifest_has_every_section_and_renders() -> None:
    scores = score_manifest(_manifest(), ALL_FOUND, _files(), _truth())
    assert set(scores) == {"rows", "duplicate_share", "detection", "relations", "duplicate_sets", "overlaps",
                           "leaks", "issues", "flags", "clean_keep"}
    baseline = _manifest({C1: 1, O1: 1}).drop(columns=["duplicate_of", "leaks_into"])
    table = markdown_table({"fastdup": score_manifest(baseline, pairs_from_groups(baseline), _files(), _truth()),
                            "Curate": {**scores, "seconds": 1.0}})
    assert "| related pairs: recall | 0.200 (1/5) | 1.000 (5/5) |" in table
    assert "| true overlap recorded as exact / duplicate / overlap / missed | 0 / 0 / 0 / 2 | 0 / 0 / 2 / 0 |" in table
    assert "| leaks into val: pairs both kept (target 0) | 1 of 1 | 1 of 1 |" in table
    assert "Duplicate sets keeping several files: 3" in decision_list(scores, Path("/d"))


def test_recorded_duplicate_share_falls_back_to_the_default() -> None:
    assert recorded_duplicate_share({"curate": {"config": {"decisions": {"duplicate_share": 0.6}}}}) == 0.6
    assert recorded_duplicate_share({"curate": {"config": {}}}) == 0.75
    assert recorded_duplicate_share({}) == 0.75
