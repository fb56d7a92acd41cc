"""The scale benchmark's generator (bench/scale_rows.py) hands the stages what the real stages would: the same
columns and dtypes as a real ingest and a real verification on a few images, and pairs shaped like the
similarity stage's. Then one small run of the timed stages."""

import shutil

import numpy as np
import pandas as pd
import pytest

from bench.scale_rows import generate, run_stages
from tasks.config import CurateConfig
from tasks.imagestats import SIGNATURE
from tasks.ingest import find_files, ingest
from tasks.schema import Col
from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY, unordered_pairs
from tasks.verify import verify_candidates


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate(3000, seed=1, work=tmp_path_factory.mktemp("scale"), images=True)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A real ingest frame and verified matches over a dozen textures, one copy and one corrupt file."""
    from tests.conftest import write_texture

    root = tmp_path_factory.mktemp("real")
    for i in range(12):
        write_texture(root / "train" / ("a" if i % 2 else "b") / f"{i}.jpg", seed=i)
    shutil.copy(root / "train" / "a" / "1.jpg", root / "train" / "b" / "copy.jpg")
    (root / "train" / "b" / "z_bad.jpg").write_bytes(b"not a jpeg")
    files = ingest(find_files({"train": root / "train"}, (".jpg",)))
    rows = files.loc[files[Col.VALID], Col.ROW].to_numpy()
    source = np.repeat(np.arange(len(rows)), 3)
    neighbours = {"source": source, "target": (source + np.tile([1, 2, 3], len(rows))) % len(rows),
                  SIMILARITY: np.linspace(0.8, 0.99, len(source))}
    pairs = unordered_pairs(pd.DataFrame(neighbours), rows)
    return files, verify_candidates(files, pairs, CurateConfig().expert.verification)


def test_generated_frames_have_the_real_columns_and_dtypes(generated, real):
    files, matches = real
    assert len(matches), "the copy should have been verified"
    assert generated.files.dtypes.to_dict() == files.dtypes.to_dict()
    assert list(generated.files.columns) == list(files.columns), (list(generated.files.columns), list(files.columns))
    assert generated.matches.dtypes.to_dict() == matches.dtypes.to_dict()
    assert list(generated.matches.columns) == list(matches.columns)


def test_generated_pairs_and_groups_are_plausible(generated):
    files, pairs, matches = generated.files, generated.similarity.pairs, generated.matches
    assert (files[Col.ROW].to_numpy() == np.arange(len(files))).all() and files[Col.PATH].is_unique
    assert (pairs[PAIR_A] < pairs[PAIR_B]).all() and not pairs.duplicated([PAIR_A, PAIR_B]).any()
    assert 5 * len(files) < len(pairs) < 10 * len(files)  # k=10 directed neighbours, some mutual
    invalid = set(files.loc[~files[Col.VALID], Col.ROW]) | set(generated.similarity.unanalysed)
    assert not invalid & (set(pairs[PAIR_A]) | set(pairs[PAIR_B]))
    assert not invalid & (set(matches[PAIR_A]) | set(matches[PAIR_B]))
    assert matches.merge(pairs, on=[PAIR_A, PAIR_B]).shape[0] == len(matches)  # verified pairs are neighbours
    assert files[SIGNATURE].notna().sum() == files[Col.VALID].sum()


def test_the_timed_stages_run_and_find_what_was_injected(generated, tmp_path):
    stages, produced = run_stages(generated, tmp_path / "out")
    assert set(stages.seconds) >= {"classify", "expectations", "summarize", "write_staged", "publish"}
    summary = produced["summary"]
    counts = generated.counts
    assert summary["issues"]["corrupt"]["count"] == counts["corrupt"]
    assert summary["issues"]["bright"]["count"] >= counts["bright"]
    assert summary["duplicate_sets"] >= counts["duplicate_groups"] * 0.9
    assert summary["gate"]["success"]
    assert (tmp_path / "out" / "manifest.parquet").is_file()
    # Injected defects and group members exist on disk, so the report shows real thumbnails.
    assert len(list((tmp_path / "out" / "report" / "thumbs").iterdir())) > 0
