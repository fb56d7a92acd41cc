"""The quality gate, run for real through Great Expectations on small manifests."""

import pandas as pd

from tasks.config import CurateConfig, apply_overrides, parse_config
from tasks.expectations import run_expectations
from tasks.schema import Col


def manifest(rows: list[dict]) -> pd.DataFrame:
    defaults = {Col.LABEL: "x", Col.VALID: True, Col.DUP_GROUP: None, Col.ISSUES: [], Col.ACTION: "keep"}
    frame = pd.DataFrame([{**defaults, Col.PATH: f"/d/{i}.jpg", Col.SHA256: f"h{i}", **row}
                          for i, row in enumerate(rows)])
    frame[Col.DUP_GROUP] = frame[Col.DUP_GROUP].astype("Int64")
    frame[Col.LABEL] = frame[Col.LABEL].astype("string")
    return frame


def test_clean_manifest_passes_and_writes_data_docs(tmp_path):
    frame = manifest([{Col.SPLIT: "val"}, {Col.SPLIT: "val", Col.DUP_GROUP: 0},
                      {Col.SPLIT: "train", Col.DUP_GROUP: 0, Col.ACTION: "drop", Col.LABEL: None}])
    result = run_expectations(frame, CurateConfig(), tmp_path / "docs")
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
        ]
    )
    result = run_expectations(frame, CurateConfig())
    assert [outcome.name for outcome in result.failed] == [
        "kept_bytes_unique", "kept_one_per_duplicate_group", "kept_readable", "kept_no_label_conflict", "labels_kept",
    ]
    assert result.failed[-1].observed == {"missing": ["train/gone"]}


def test_drop_share_limit_and_message():
    frame = manifest([{Col.SPLIT: "train", Col.ACTION: "drop", Col.LABEL: None} for _ in range(3)]
                     + [{Col.SPLIT: "train", Col.LABEL: None}])
    strict = parse_config(apply_overrides({}, ["gate.max_drop_share=0.5"]))
    result = run_expectations(frame, strict)
    assert [outcome.name for outcome in result.failed] == ["drop_share_within_limit"]
    assert result.message() == "quality gate failed: 1 of 7 expectations (drop_share_within_limit)"
    lenient = parse_config(apply_overrides({}, ["gate.max_drop_share=0.8"]))
    assert run_expectations(frame, lenient).success
