"""Nothing reaches the network during a run: fastdup's version check and telemetry, Prefect's analytics and
Great Expectations are all exercised by a whole run in a fresh process whose sockets are guarded."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.demo import MIN_TILES_PER_CLASS, build_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
GUARD = Path(__file__).parent / "netguard"


def guarded_run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = tmp_path / "network.log"
    log.touch()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(GUARD), str(ROOT)]),
        "CURATE_NETGUARD_LOG": str(log),
        "PREFECT_HOME": str(tmp_path / "prefect"),  # a new database: the cold start, as on a fresh machine
    }
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return result, log.read_text().splitlines()


@pytest.mark.slow
def test_the_guard_sees_an_outbound_attempt(tmp_path):
    code = "import socket\ntry:\n    socket.create_connection(('example.com', 443), timeout=1)\nexcept OSError:\n    pass"
    result, attempts = guarded_run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    assert attempts and "example.com" in attempts[0]


@pytest.mark.slow
def test_a_whole_run_attempts_no_outbound_connection(tmp_path):
    root = tmp_path / "data"
    build_demo_dataset(root, tiles_per_class=MIN_TILES_PER_CLASS)
    splits = [arg for split in ("train", "val", "unlabeled") for arg in ("--split", f"{split}={root / split}")]
    result, attempts = guarded_run(["-m", "flows.curate", *splits, "--out", str(tmp_path / "out"),
                                    "--set", f"cache_dir={tmp_path / 'cache'}"], tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert (tmp_path / "out" / "manifest.parquet").is_file()
    assert attempts == [], attempts


def test_the_whole_suite_runs_behind_the_guard():
    """conftest installs the guard in this process and passes it to every Python subprocess."""
    import socket

    assert socket.socket.connect.__module__ == "curate_netguard"
    assert socket.getaddrinfo.__module__ == "curate_netguard"
    assert str(GUARD) in os.environ["PYTHONPATH"].split(os.pathsep)
