"""The gate before training: `flows.gate` (its `main`, and once as `python -m flows.gate OUT` on a real run's output)
and `load_split`, on a curated output the stage functions wrote (conftest's `written_output`)."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows import gate
from tasks.errors import DatasetError
from tasks.gate import check_output, load_split
from tasks.schema import Col

ROOT = Path(__file__).resolve().parents[1]


class Gate(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_gate(capsys):
    """`python -m flows.gate OUT` in this process: its exit status and what it printed."""

    def run(out: Path) -> Gate:
        capsys.readouterr()
        status = gate.main([str(out)])
        return Gate(status, *capsys.readouterr())

    return run


def test_a_fresh_output_passes_and_loads(written_output, run_gate):
    out, manifest = written_output
    assert check_output(out).success
    train = load_split(out, "train")
    expected = manifest[(manifest[Col.SPLIT] == "train") & (manifest[Col.ACTION] == "keep")]
    assert list(train.columns) == [Col.PATH, Col.LABEL]
    assert sorted(train[Col.PATH]) == sorted(expected[Col.PATH])
    result = run_gate(out)
    assert result.returncode == 0 and "passed" in result.stdout


@pytest.mark.slow
def test_a_real_runs_output_passes_the_gate_command_and_loads(curated):
    """The flow's own output, through the command a training job runs."""
    _, out, manifest, _ = curated
    result = subprocess.run([sys.executable, "-m", "flows.gate", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "passed" in result.stdout, result.stderr
    for split in ("train", "val", "unlabeled"):
        expected = manifest[(manifest[Col.CURATED_SPLIT] == split) & (manifest[Col.ACTION] == "keep")]
        assert sorted(load_split(out, split)[Col.PATH]) == sorted(expected[Col.PATH]), split


def test_an_edited_split_fails_the_gate(written_output, run_gate, tmp_path):
    out, _ = written_output
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    train = pd.read_parquet(copy / "splits" / "train.parquet")
    train.iloc[1:].to_parquet(copy / "splits" / "train.parquet")
    result = run_gate(copy)
    assert result.returncode == 1 and "splits_match_manifest" in result.stderr


def test_a_leak_kept_by_hand_fails_the_gate_and_a_missing_pairs_file_exits_2(written_output, run_gate, tmp_path):
    """Keep, as a reviewer might, the training tile dropped for showing ground of a val tile: the re-check fails on
    the leak. Without pairs.parquet the output cannot be checked at all."""
    out, manifest = written_output
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    leaking = manifest[manifest[Col.LEAKS_INTO].notna() & (manifest[Col.ACTION] == "drop")]
    assert len(leaking), "the output has a training tile that overlaps a val tile"
    edited = pd.read_parquet(copy / "manifest.parquet")
    edited.loc[edited[Col.PATH].isin(leaking[Col.PATH]), Col.ACTION] = "keep"
    table = pq.read_table(copy / "manifest.parquet")
    pq.write_table(pa.Table.from_pandas(edited, schema=table.schema, preserve_index=False), copy / "manifest.parquet")
    train = edited[(edited[Col.SPLIT] == "train") & (edited[Col.ACTION] == "keep")]
    train[[Col.PATH, Col.LABEL]].to_parquet(copy / "splits" / "train.parquet")
    result = run_gate(copy)
    assert result.returncode == 1 and "kept_training_shares_no_evaluation_ground" in result.stderr, result.stderr
    (copy / "pairs.parquet").unlink()
    result = run_gate(copy)
    assert result.returncode == 2 and "pairs.parquet" in result.stderr


def test_a_missing_output_exits_2(run_gate, tmp_path):
    result = run_gate(tmp_path / "nothing")
    assert result.returncode == 2 and "manifest.parquet" in result.stderr
    with pytest.raises(DatasetError):
        load_split(tmp_path, "train")


def test_an_interrupted_publication_is_not_trusted(written_output, run_gate, tmp_path):
    out, _ = written_output
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / ".publishing").write_text(".staging-killed")  # as a run killed while publishing leaves it
    result = run_gate(copy)
    assert result.returncode == 2 and "killed while publishing" in result.stderr


@pytest.mark.slow
def test_the_re_check_loads_neither_opencv_nor_fastdup():
    """`flows.gate` runs right before training, often in the training job's own environment: it reads Parquet and
    runs the expectations, and loads no image library's thread pools (a process that had loaded OpenCV once ended
    in `terminate called without an active exception` as it exited)."""
    code = "import sys, flows.gate, flows.export; print(sorted({'cv2', 'fastdup', 'numba'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
