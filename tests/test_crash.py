"""Crash safety: a run killed at any moment leaves the previous outputs, or, once the next run has started,
the complete new ones; never a mix and never a partial manifest."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.outputs import exclusive_output, interrupted_publication, new_staging

pytestmark = pytest.mark.slow  # every test kills a subprocess

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ["manifest.parquet", "summary.json", "splits/train.parquet", "report/index.html", "quality/gate.json"]

# Publishes a staged "new" output over an "old" one, killing itself with SIGKILL at the k-th os.replace.
KILLER = """
import os, signal, sys
from pathlib import Path
import tasks.outputs as outputs
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
staging = outputs.new_staging(out)
for name in {entries!r}:
    (staging / name).parent.mkdir(parents=True, exist_ok=True)
    (staging / name).write_text("new")
calls = 0
real_replace = os.replace
def replace(source, target):
    global calls
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    calls += 1
    real_replace(source, target)
outputs.os.replace = replace
outputs.publish(staging, out)
"""


def contents(out: Path) -> set[str]:
    return {(out / name).read_text() if (out / name).exists() else "missing" for name in ENTRIES}


@pytest.mark.parametrize("kill_at", range(12))
def test_killed_while_publishing(tmp_path, kill_at):
    out = tmp_path / "out"
    for name in ENTRIES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old")
    code = KILLER.format(entries=ENTRIES)
    result = subprocess.run([sys.executable, "-c", code, str(out), str(kill_at)], cwd=ROOT, timeout=60)
    killed = result.returncode == -signal.SIGKILL
    if not interrupted_publication(out):
        assert contents(out) == ({"old"} if killed else {"new"})
    with exclusive_output(out):  # what the next run does first
        new_staging(out)
    assert contents(out) in ({"old"}, {"new"})
    assert not interrupted_publication(out)
    stagings = list(out.glob(".staging-*"))
    assert len(stagings) == 1 and not any(stagings[0].iterdir()), "only the new run's empty staging folder"


def test_a_whole_run_killed_midway_leaves_the_previous_outputs(demo, curated, tmp_path):
    """SIGKILL a real run once its stages have started (its staging folder exists), then run again."""
    import shutil

    root, _ = demo
    _, finished, _, _ = curated
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = (out / "manifest.parquet").read_bytes()
    args = [sys.executable, "-m", "flows.curate",
            *[a for s in ("train", "val", "unlabeled") for a in ("--split", f"{s}={root / s}")], "--out", str(out),
            "--set", f"cache_dir={tmp_path / 'cache'}"]
    # Its own process group, so the kill also takes the temporary Prefect server it starts (as a supervisor
    # killing a pipeline would); a killed run must not leave an orphan server behind.
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".staging-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # into ingest or fastdup
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if not interrupted_publication(out):
        assert (out / "manifest.parquet").read_bytes() == before
    rerun = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not list(out.glob(".staging-*")) and not interrupted_publication(out)
