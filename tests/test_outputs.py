import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tasks.config import CurateConfig
from tasks.expectations import GateResult
from tasks.outputs import new_staging, publish, summarize, write_staged
from tasks.schema import MANIFEST_COLUMNS, PAIRS_COLUMNS, Band, Col, read_metadata
from tests.test_classify import DUPLICATE, OVERLAP, classify_with_pairs, make_files, make_matches, make_similarity

BANDS = CurateConfig().expert.bands.thresholds()
PASSED = GateResult(success=True, outcomes=[], raw={})


@pytest.fixture
def classified():
    """Six hand-made rows (no images) through relations and classification: the manifest, the related pairs by path
    and the similarity. Files 0-2 (train) are one set of copies; 3 (train) overlaps 4 (val). Not conftest's
    `curated`, a real run's outputs."""
    files = make_files([{Col.PATH: f"/d/{i}.jpg", Col.SPLIT: "train" if i < 4 else "val", Col.LABEL: "x"}
                        for i in range(6)])
    similarity = make_similarity([(0, 1, 0.995), (0, 2, 0.995), (1, 2, 0.995), (3, 4, 0.95)])
    matches = make_matches([(0, 1, DUPLICATE), (1, 2, DUPLICATE), (3, 4, OVERLAP)])
    return *classify_with_pairs(files, similarity, matches, CurateConfig()), similarity


def test_summary_counts_distinct_pairs_and_images_with_denominators(classified):
    manifest, pairs, similarity = classified
    summary = summarize(manifest, pairs, similarity, BANDS, [], PASSED)
    assert summary["files"] == 6
    assert summary["pairs"][Band.IDENTICAL] == {"above": 0.99, "count": 3, "of": 15, "share": 0.2}
    assert summary["pairs"][Band.SIMILAR]["count"] == 1
    assert summary["issues"]["identical"] == {"count": 3, "of": 6, "share": 0.5}
    assert summary["actions"]["drop"]["count"] == 3
    assert summary["duplicate_sets"] == 1
    # 0-1 and 1-2 verified, 0-2 composed through 1; 3-4 overlap.
    assert summary["relations"]["duplicate"]["count"] == 3 and summary["relations"]["overlap"]["count"] == 1
    assert summary["relations"]["cross_split"] == {"count": 1, "of": 15, "share": round(1 / 15, 6)}
    assert summary["split_leaks"]["drop"]["count"] == 1  # 3 (train) overlaps 4 (val)


def test_outputs_are_staged_then_published(tmp_path, classified):
    manifest, pairs, similarity = classified
    out = tmp_path / "out"
    for run in range(2):  # the second run replaces the first's outputs
        staging = new_staging(out)
        summary = summarize(manifest, pairs, similarity, BANDS, [], PASSED)
        similarities = similarity.pairs["similarity"].to_numpy()
        write_staged(staging, manifest, pairs, summary, PASSED, {"run": run}, "t", similarities, BANDS)
        publish(staging, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.parquet", "pairs.parquet", "quality", "report", "splits", "summary.json"]
    assert tuple(pq.read_table(out / "pairs.parquet").schema.names) == PAIRS_COLUMNS
    table = pq.read_table(out / "manifest.parquet")
    assert tuple(table.schema.names) == MANIFEST_COLUMNS
    assert read_metadata(table.schema) == {"run": 1}
    train = pd.read_parquet(out / "splits" / "train.parquet")
    assert set(train[Col.ACTION]) == {"keep"} and len(train) == 1
    assert json.loads((out / "summary.json").read_text())["files"] == 6
    assert "<table>" in (out / "report" / "index.html").read_text()
