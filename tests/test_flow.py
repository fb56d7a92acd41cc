"""End to end: the real `curate` flow (Prefect, fastdup, Great Expectations, Parquet) on the generated demo data,
and its command line. The runs are marked slow; the command line's own checks, which end before the flow starts,
run in this process and are not."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.curate import main
from tasks.demo import OVERLAP_KINDS
from tasks.schema import MANIFEST_COLUMNS, Col, read_metadata
from tests.conftest import split_args

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_COLUMNS = (
    "path split label sha256 bytes width height valid error blur brightness contrast nn_path nn_similarity "
    "dup_group cluster issues action reason duplicate_of"
).split()


@pytest.mark.slow
def test_run_passes_the_gate_and_writes_every_output(curated):
    status, out, manifest, truth = curated
    assert status == 0
    for name in ("manifest.parquet", "pairs.parquet", "summary.json", "report/index.html", "quality/expectations.json",
                 "quality/data_docs/index.html", "splits/train.parquet", "splits/val.parquet",
                 "splits/unlabeled.parquet"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".staging-*")), "staging folders must not survive a run"
    assert set(CONTRACT_COLUMNS) <= set(manifest.columns) and tuple(manifest.columns) == MANIFEST_COLUMNS
    assert sorted(manifest.index) == sorted(truth), "every file found gets exactly one row"
    metadata = read_metadata(pq.read_schema(out / "manifest.parquet"))
    assert metadata["engine"].startswith("fastdup 2.54") and metadata["config"]["expert"]["bands"]["identical"] == 0.99
    assert {"ingest", "similarity", "classify", "expectations"} <= set(metadata["stage_seconds"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == len(truth) and summary["issues"]["corrupt"]["count"] == 3


@pytest.mark.slow
def test_cleaned_splits_hold_exactly_the_kept_rows(curated):
    _, out, manifest, _ = curated
    for split in ("train", "val", "unlabeled"):
        kept = pd.read_parquet(out / "splits" / f"{split}.parquet")
        expected = manifest[(manifest[Col.SPLIT] == split) & (manifest[Col.ACTION] == "keep")]
        assert sorted(kept[Col.PATH]) == sorted(expected[Col.PATH])


@pytest.mark.slow
def test_decision_for_each_injected_file(curated):
    _, _, manifest, truth = curated
    rows = {path: manifest.loc[path] for path in truth}
    for path, item in truth.items():
        row = rows[path]
        issues = set(row[Col.ISSUES])
        context = f"{item.kind} {Path(path).name}: {row[Col.ACTION]} {sorted(issues)} {row[Col.REASON]}"
        if item.kind == "corrupt":
            assert not row[Col.VALID] and row[Col.ERROR] and issues == {"corrupt"} and row[Col.ACTION] == "drop"
        elif item.kind in ("blurred", "dark", "bright"):
            expected = {"blurred": "blurry", "dark": "dark", "bright": "bright"}[item.kind]
            assert expected in issues and row[Col.ACTION] == "drop", context
        elif item.kind == "out_of_place":
            assert "outlier" in issues and row[Col.ACTION] == "review", context
        elif item.kind in OVERLAP_KINDS:  # distinct ground: no duplicate set; only a leak into val drops a tile
            source = rows[str(item.source)]
            assert "overlap" in issues and pd.isna(row[Col.DUP_GROUP]), context
            assert row[Col.ACTION] == "keep", context
            if item.split == "val":
                assert (source[Col.ACTION], source[Col.LEAKS_INTO]) == ("drop", path), context
            else:
                assert source[Col.ACTION] == "keep", context
            assert ("split_leak" in issues) == (item.split != truth[str(item.source)].split), context
        elif item.source is not None:  # exact and near copies
            source = rows[str(item.source)]
            assert pd.notna(row[Col.DUP_GROUP]) and row[Col.DUP_GROUP] == source[Col.DUP_GROUP], context
            kept, dropped = (source, row) if row[Col.ACTION] == "drop" else (row, source)
            assert dropped[Col.ACTION] == "drop" and dropped[Col.DUPLICATE_OF] == kept[Col.PATH], context
            if item.split != truth[str(item.source)].split:
                assert "split_leak" in issues and "split_leak" in set(source[Col.ISSUES]), context
            if item.label != truth[str(item.source)].label and item.label and truth[str(item.source)].label:
                assert "label_conflict" in issues and kept[Col.ACTION] == "review", context
            if item.kind == "exact_copy":
                assert "exact_duplicate" in issues, context
        else:  # a clean tile with no copy in the dataset
            has_copy = any(other.source is not None and str(other.source) == path for other in truth.values())
            if not has_copy:
                assert row[Col.ACTION] == "keep" and not issues - {"similar"}, context


@pytest.mark.slow
def test_failed_gate_exits_1_and_still_writes_outputs(demo, tmp_path):
    root, truth = demo
    out = tmp_path / "strict"
    status = main([*split_args(root), "--out", str(out), "--set", "gate.max_drop_share=0.01",
                   "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert status == 1
    assert len(pd.read_parquet(out / "manifest.parquet")) == len(truth)
    gate = json.loads((out / "quality" / "expectations.json").read_text())
    assert not gate["success"]
    assert [item["name"] for item in gate["expectations"] if not item["success"]] == ["drop_share_within_limit"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.curate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    "args, named",
    [
        (["--set", "quality.darkness=3"], "quality.darkness"),
        (["--set", "expert.bands.similar=0.999"], "identical > near_identical > similar"),
        (["--split", "train=/nonexistent/folder"], "/nonexistent/folder"),
        (["--split", "train"], "NAME=DIR"),
        (["--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
        (["--bogus"], "--bogus"),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line(args, named, capsys):
    status = main(args)
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], stderr


@pytest.mark.slow
def test_fewer_images_than_fastdup_needs_still_gives_every_row(tmp_path, texture):
    for index in range(3):
        texture(tmp_path / "data" / "c" / f"{index}.jpg", seed=index)
    (tmp_path / "data" / "c" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["--split", f"train={tmp_path / 'data'}", "--out", str(out),
                 "--set", f"cache_dir={tmp_path / 'cache'}"]) == 0
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == 4 and manifest[Col.NN_PATH].isna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert "needs at least 10" in summary["similarity"]["skipped"]


@pytest.mark.slow
def test_a_second_run_on_the_same_output_exits_2_at_once(demo, tmp_path):
    from tasks.outputs import exclusive_output

    root, _ = demo
    out = tmp_path / "busy"
    with exclusive_output(out):  # as if another run held the folder
        status = main([*split_args(root), "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert status == 2
    assert not (out / "manifest.parquet").exists()


@pytest.mark.slow
def test_sources_are_untouched(demo, curated):
    import hashlib

    root, truth = demo
    _, _, manifest, _ = curated
    for path in truth:  # the bytes now are the bytes ingest hashed before any other stage ran
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == manifest.loc[path, Col.SHA256], path
    assert sorted(str(p) for p in root.rglob("*") if p.is_file() and p.name != ".demo.json") == sorted(truth)


@pytest.mark.slow
def test_the_run_publishes_prefect_artifacts(curated):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def artifacts(key):
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    _, out, _, _ = curated  # other tests' runs publish too: find this run's by its output folder
    summaries = [a for a in asyncio.run(artifacts("curate-summary")) if str(out) in a.data]
    assert summaries and "quality gate passed" in summaries[0].data
    run_id = summaries[0].flow_run_id
    issues = [a for a in asyncio.run(artifacts("curate-issues")) if a.flow_run_id == run_id]
    assert issues and "corrupt" in str(issues[0].data)
    links = [a for a in asyncio.run(artifacts("curate-report")) if a.flow_run_id == run_id]
    assert links and (out / "report" / "index.html").as_uri() in str(links[0].data)


@pytest.mark.slow
def test_later_runs_honour_a_reviewers_overrides(demo, curated, tmp_path):
    root, truth = demo
    _, _, manifest, _ = curated
    reviewed = manifest[manifest[Col.ACTION] == "review"].index[0]
    kept = manifest[manifest[Col.ACTION] == "keep"].index[0]
    (tmp_path / "review.yaml").write_text(f'"{reviewed}": keep\n"{kept}": drop\n')
    out = tmp_path / "out"
    assert main([*split_args(root), "--out", str(out), "--set", f"decisions.overrides={tmp_path / 'review.yaml'}",
                 "--set", f"cache_dir={tmp_path / 'cache'}"]) == 0
    again = pd.read_parquet(out / "manifest.parquet").set_index(Col.PATH)
    assert again.loc[reviewed, Col.ACTION] == "keep" and again.loc[reviewed, Col.REASON].startswith("reviewer: keep")
    assert again.loc[kept, Col.ACTION] == "drop" and again.loc[kept, Col.REASON].startswith("reviewer: drop")


def test_dry_run_lists_and_writes_nothing(tmp_path, texture, capsys):
    root = tmp_path / "data"
    images = {str(texture(root / name, seed=seed)) for seed, name in enumerate(
        ["train/a/0.jpg", "train/b/1.jpg", "val/a/2.jpg", "unlabeled/3.jpg"])}
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    status = main([*split_args(root), "--out", str(tmp_path / "out"), "--dry-run"])
    output = capsys.readouterr()
    assert status == 0, output.err
    lines = output.out.splitlines()
    assert lines[0] == f"dataset {root.name}: 4 image files, 1 other files left out"
    assert images <= set(lines)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_no_images_anywhere_exits_2_before_anything_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("--split", f"train={tmp_path / 'empty'}", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"curate: error: no image files found in train={tmp_path / 'empty'}"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("folders, expected", [
    ({"train": "/data/sat/train", "val": "/data/sat/val"}, "sat"),
    ({"train": "/data/sat/2024/train", "val": "/data/sat/val"}, "sat"),
    ({"train": "/data/sat/train"}, "sat"),
])
def test_the_dataset_is_named_after_the_folder_holding_its_splits(folders, expected):
    from flows.curate import dataset_name
    from tasks.config import CurateConfig

    assert dataset_name({name: Path(folder) for name, folder in folders.items()}, CurateConfig()) == expected


@pytest.mark.slow
def test_reassign_writes_each_set_of_shared_ground_to_one_split_and_the_gate_agrees(demo, tmp_path):
    """The demo with decisions.split_leak=reassign: nothing dropped for a leak, no kept files of different curated
    splits share ground unless both splits are training splits, and `flows.gate` passes on the output."""
    from tasks.gate import check_output

    root, truth = demo
    out = tmp_path / "reassigned"
    assert main([*split_args(root), "--out", str(out), "--set", "decisions.split_leak=reassign",
                 "--set", f"cache_dir={tmp_path / 'cache'}"]) == 0
    manifest = pd.read_parquet(out / "manifest.parquet").set_index(Col.PATH, drop=False)
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert manifest[Col.LEAKS_INTO].isna().all()
    assert (manifest[Col.SPLIT] != manifest[Col.CURATED_SPLIT]).any(), "the demo's leaks move some files"
    kept = manifest[Col.ACTION] == "keep"
    split = manifest[Col.CURATED_SPLIT]
    for a, b in zip(pairs["path_a"], pairs["path_b"]):
        if kept[a] and kept[b] and split[a] != split[b]:
            assert "val" not in (split[a], split[b]), (a, b)
    for name in split[kept].unique():
        written = pd.read_parquet(out / "splits" / f"{name}.parquet")[Col.PATH]
        assert sorted(written) == sorted(manifest.index[kept & (split == name)])
    assert check_output(out).success
