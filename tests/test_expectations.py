"""The quality gate, run for real through Great Expectations on small manifests."""

import pandas as pd

from tasks.config import CurateConfig, apply_assignments, parse_config
from tasks.expectations import run_expectations
from tasks.schema import Col, PairCol

NO_PAIRS = pd.DataFrame({PairCol.PATH_A: pd.Series(dtype=str), PairCol.PATH_B: pd.Series(dtype=str)})


def pairs(*related: tuple[int, int]) -> pd.DataFrame:
    """Related pairs by path (only the columns the gate reads), of `manifest`'s rows by position."""
    return pd.DataFrame({PairCol.PATH_A: [f"/d/{a}.jpg" for a, _ in related],
                         PairCol.PATH_B: [f"/d/{b}.jpg" for _, b in related]})


def manifest(rows: list[dict]) -> pd.DataFrame:
    defaults = {Col.LABEL: "x", Col.VALID: True, Col.DUP_GROUP: None, Col.ISSUES: [], Col.ACTION: "keep"}
    frame = pd.DataFrame([{**defaults, Col.PATH: f"/d/{i}.jpg", Col.SHA256: f"h{i}", **row}
                          for i, row in enumerate(rows)])
    frame[Col.CURATED_SPLIT] = frame[Col.CURATED_SPLIT].fillna(frame[Col.SPLIT]) if Col.CURATED_SPLIT in frame \
        else frame[Col.SPLIT]
    frame[Col.DUP_GROUP] = frame[Col.DUP_GROUP].astype("Int64")
    frame[Col.LABEL] = frame[Col.LABEL].astype("string")
    return frame


def test_clean_manifest_passes_and_writes_data_docs(tmp_path):
    frame = manifest([{Col.SPLIT: "val"}, {Col.SPLIT: "val", Col.DUP_GROUP: 0},
                      {Col.SPLIT: "train", Col.DUP_GROUP: 0, Col.ACTION: "drop", Col.LABEL: None}])
    result = run_expectations(frame, pairs((1, 2)), CurateConfig(), tmp_path / "docs")
    assert result.success, result.to_json()
    assert result.message().startswith("quality gate passed")
    assert (tmp_path / "docs" / "index.html").is_file()


def test_each_broken_rule_is_named():
    frame = manifest(
        [
            {Col.SPLIT: "train", Col.SHA256: "same"},
            {Col.SPLIT: "train", Col.SHA256: "same"},  # kept bytes twice
            {Col.SPLIT: "train", Col.DUP_GROUP: 3},
            {Col.SPLIT: "val", Col.DUP_GROUP: 3},  # a split leak survives
            {Col.SPLIT: "train", Col.VALID: False},  # a corrupt file kept
            {Col.SPLIT: "train", Col.ISSUES: ["label_conflict"]},
            {Col.SPLIT: "train", Col.LABEL: "gone", Col.ACTION: "drop"},  # a label loses every image
            {Col.SPLIT: "unlabeled", Col.LABEL: None},  # overlaps a kept val file: a leak survives
        ]
    )
    result = run_expectations(frame, pairs((2, 3), (7, 3)), CurateConfig())
    assert [outcome.name for outcome in result.failed] == [
        "kept_bytes_unique", "kept_one_per_duplicate_set", "kept_readable", "kept_no_label_conflict",
        "kept_training_shares_no_evaluation_ground", "labels_kept",
    ]
    leaks = next(outcome for outcome in result.failed if outcome.name == "kept_training_shares_no_evaluation_ground")
    assert leaks.observed["unexpected_count"] == 2
    assert result.failed[-1].observed == {"missing": ["train/gone"]}
    # Sent to review instead of dropped, a leak is a person's call: the gate does not check it.
    review = parse_config(apply_assignments({}, ["decisions.split_leak=review"]))
    assert "kept_training_shares_no_evaluation_ground" not in [
        outcome.name for outcome in run_expectations(frame, pairs((7, 3)), review).outcomes]
    # Overlaps between two training splits, or within one, are not leaks.
    assert run_expectations(frame.iloc[[0, 2, 7]], pairs((0, 2), (2, 7)), CurateConfig()).success


def test_drop_share_limit_and_message():
    frame = manifest([{Col.SPLIT: "train", Col.ACTION: "drop", Col.LABEL: None} for _ in range(3)]
                     + [{Col.SPLIT: "train", Col.LABEL: None}])
    strict = parse_config(apply_assignments({}, ["gate.max_drop_share=0.5"]))
    result = run_expectations(frame, NO_PAIRS, strict)
    assert [outcome.name for outcome in result.failed] == ["drop_share_within_limit"]
    assert result.message() == "quality gate failed: 1 of 8 expectations (drop_share_within_limit)"
    lenient = parse_config(apply_assignments({}, ["gate.max_drop_share=0.8"]))
    assert run_expectations(frame, NO_PAIRS, lenient).success
