"""prefect.yaml end to end: a real Prefect server on 127.0.0.1, a `process` work pool, `prefect deploy --all`, two
runs of `curate-adhoc` picked up by `prefect worker start --run-once`: one passes the gate (Completed), one is
made to fail it (Failed, outputs still written).

Every CLI call is a subprocess with this test's environment, so the socket guard of conftest.py (via PYTHONPATH)
also covers the server, the worker and the flow-run processes it starts: the session fails if any of them tried to
reach beyond this machine.

The pool is created by the worker (`prefect worker start --type process`), not by `prefect work-pool create`:
the latter makes the server fetch Prefect's collection registry from raw.githubusercontent.com (it falls back to
a bundled copy offline), which the guard records as a network attempt.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tasks.demo import MIN_TILES_PER_CLASS, build_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "curate-process"
RUN_ID = re.compile(r"UUID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(url: str, path: str, body: dict | None = None):
    """GET (or POST a JSON body to) the Prefect REST API and decode the JSON answer."""
    request = urllib.request.Request(
        f"{url}{path}", data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free loopback port, with its own Prefect home; yields (env, api_url)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,  # carries the socket guard (PYTHONPATH, CURATE_NETGUARD_LOG)
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",  # the worker's and flow runs' logs, for failure messages
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        # No scheduler: the test triggers its runs itself, and a nightly run must never be picked up by the worker.
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler",
             "--analytics-off", "--no-ui"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited with {server.returncode}:\n{tail(log)}")
            try:
                if api(api_url, "/health") is True:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server did not answer /api/health within 90 s:\n{tail(log)}")
            time.sleep(0.25)
        yield env, api_url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn process it started
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def prefect(env: dict, *args: str, timeout: float = 120) -> str:
    """Run one `prefect` CLI command from the project root; fail the test with its output if it fails."""
    done = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"prefect {' '.join(args)} exited {done.returncode}:\n{output[-4000:]}"
    return output


def test_prefect_yaml_declares_both_deployments_sharing_pool_and_parameters():
    text = (ROOT / "prefect.yaml").read_text()
    spec = yaml.safe_load(text)
    deployments = {item["name"]: item for item in spec["deployments"]}
    assert set(deployments) == {"curate-nightly", "curate-adhoc"}
    assert "&process_pool" in text and "*process_pool" in text and "&demo_parameters" in text
    assert not spec.get("pull") and not spec.get("build") and not spec.get("push")  # nothing cloned or built
    for item in deployments.values():
        assert item["entrypoint"] == "flows/curate.py:curate"
        assert item["work_pool"]["name"] == POOL
        assert set(item["parameters"]) == {"splits", "out", "config"}
    assert [schedule["cron"] for schedule in deployments["curate-nightly"]["schedules"]] == ["0 2 * * *"]
    assert not deployments["curate-adhoc"].get("schedules")


@pytest.mark.slow
def test_deploy_all_then_worker_runs_adhoc_pass_and_fail(prefect_server, tmp_path):
    env, api_url = prefect_server
    started = time.monotonic()

    # The worker creates the `process` pool when it is missing, then finds no runs and exits.
    prefect(env, "worker", "start", "--pool", POOL, "--type", "process", "--run-once")
    assert api(api_url, f"/work_pools/{POOL}")["type"] == "process"

    output = prefect(env, "deploy", "--all", "--no-prompt")
    deployments = {item["name"]: item for item in api(api_url, "/deployments/filter", {})}
    assert set(deployments) == {"curate-nightly", "curate-adhoc"}, output
    nightly, adhoc = deployments["curate-nightly"], deployments["curate-adhoc"]
    for deployment in (nightly, adhoc):
        assert deployment["work_pool_name"] == POOL
        assert deployment["entrypoint"] == "flows/curate.py:curate"
        assert deployment["parameters"] == {"splits": None, "out": None, "config": {}}
        # The only pull step: the project folder as working directory (no git clone, nothing downloaded).
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in nightly["schedules"]] == [
        ("0 2 * * *", "UTC", True)
    ]
    assert adhoc["schedules"] == []

    data = tmp_path / "dataset"
    files = build_demo_dataset(data, tiles_per_class=MIN_TILES_PER_CLASS)
    splits = {split: str(data / split) for split in ("train", "val", "unlabeled")}
    passing, failing = tmp_path / "curated", tmp_path / "strict"
    cache = {"cache_dir": str(tmp_path / "cache")}  # the default, data/cache, is inside the repository
    run_ids = {}
    for out, params in (
        (passing, {"splits": splits, "out": str(passing), "config": cache}),
        # Overrides merge only at the top level: `config` is the whole configuration object.
        (failing, {"splits": splits, "out": str(failing), "config": {**cache, "gate": {"max_drop_share": 0.01}}}),
    ):
        output = prefect(env, "deployment", "run", "curate/curate-adhoc", "--params", json.dumps(params))
        match = RUN_ID.search(output)
        assert match, output
        run_ids[out] = match.group(1)

    # One worker pass picks up both runs (each a subprocess), waits for them and exits.
    worker_log = prefect(env, "worker", "start", "--pool", POOL, "--run-once", timeout=300)

    runs = {out: api(api_url, f"/flow_runs/{run_id}") for out, run_id in run_ids.items()}
    context = f"worker output:\n{worker_log[-6000:]}"
    good, strict = runs[passing], runs[failing]
    assert good["deployment_id"] == adhoc["id"] and strict["deployment_id"] == adhoc["id"]
    assert good["state"]["type"] == "COMPLETED", context
    assert good["state"]["message"].startswith("quality gate passed"), context
    assert strict["state"]["type"] == "FAILED", context
    assert "drop_share_within_limit" in strict["state"]["message"], context

    for out, passed in ((passing, True), (failing, False)):
        manifest = pd.read_parquet(out / "manifest.parquet")
        assert len(manifest) == len(files) and set(manifest["path"]) == {str(item.path) for item in files}
        gate = json.loads((out / "quality" / "expectations.json").read_text())
        assert gate["success"] is passed
        assert (out / "summary.json").is_file() and (out / "report" / "index.html").is_file()
    failed = [item["name"] for item in json.loads((failing / "quality" / "expectations.json").read_text())[
        "expectations"] if not item["success"]]
    assert failed == ["drop_share_within_limit"]

    # The run's artifacts reached the server too.
    artifacts = api(api_url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [good["id"]]}}})
    assert {"curate-summary", "curate-issues", "curate-report"} <= {item["key"] for item in artifacts}
    print(f"deploy + two worker runs: {time.monotonic() - started:.1f} s")
