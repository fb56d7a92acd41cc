"""Scale-out: the per-image work runs in chunks on a Prefect task runner, and where it runs changes no answer."""

import os

import numpy as np
import pandas as pd
import pytest

from flows.curate import main
from flows.runners import concurrent_chunks, task_runner
from tasks.config import ConfigError, CurateConfig, RunnerConfig, load_config
from tasks.ingest import find_files, ingest
from tasks.schema import Col
from tasks.similarity import compute_similarity
from tests.conftest import split_args

SIMILARITY_CONFIG = CurateConfig().expert.similarity


@pytest.mark.slow
def test_chunked_embedding_finds_the_same_neighbours(tmp_path, texture):
    for seed in range(13):
        texture(tmp_path / "data" / f"{seed}.jpg", seed=seed)
    files = ingest(find_files({"train": tmp_path / "data"}, (".jpg",)))
    whole = compute_similarity(files, SIMILARITY_CONFIG, tmp_path / "whole")
    chunked = compute_similarity(files, SIMILARITY_CONFIG, tmp_path / "chunked", chunk_size=5)
    assert chunked.embedded == whole.embedded == 13
    pd.testing.assert_frame_equal(chunked.pairs, whole.pairs)


def test_runner_settings_are_checked():
    with pytest.raises(ConfigError, match="runner: dask_address needs kind: dask"):
        load_config(assignments=["runner.dask_address=tcp://127.0.0.1:8786"])
    assert load_config(assignments=["runner.kind=processes"]).runner.kind == "processes"
    assert type(task_runner(RunnerConfig(kind="dask", dask_address="tcp://127.0.0.1:8786"))).__name__ == \
        "DaskTaskRunner"
    assert (concurrent_chunks(RunnerConfig(workers=3)), concurrent_chunks(RunnerConfig())) == (3, os.cpu_count())


@pytest.fixture(scope="module")
def dask_cluster():
    """A running cluster of two worker processes, as a team's existing cluster would be (loopback only)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.slow
@pytest.mark.parametrize("where", ["--dask-address", "runner.kind=dask", "runner.kind=processes"])
def test_other_runners_give_the_same_manifest_as_the_default_runner(where, curated, demo, tmp_path, request):
    """Two Dask worker processes (an existing cluster reached by its address, or a local one the run starts) or
    two local worker processes, small chunks (so every stage has several) and an empty cache (so the work is
    really done on the workers): the manifest must be the default runner's, row for row."""
    _, _, expected, _ = curated
    root, _ = demo
    out = tmp_path / "out"
    runner = ["--dask-address", request.getfixturevalue("dask_cluster")] if where == "--dask-address" else \
        ["--set", where, "--set", "runner.workers=2"]
    status = main([
        *split_args(root), "--out", str(out), *runner,
        "--set", "expert.runner.chunk_size=40", "--set", f"cache_dir={tmp_path / 'cache'}",
    ])
    assert status == 0
    manifest = pd.read_parquet(out / "manifest.parquet").set_index(Col.PATH, drop=False)
    assert len(manifest) > 3 * 40, "the demo needs more than three chunks for this test to mean anything"
    assert np.array_equal(manifest.index, expected.index)
    pd.testing.assert_frame_equal(manifest, expected, check_exact=False, rtol=1e-5)
