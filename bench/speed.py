"""Issue 24's speed benchmark: cold Curate against bare fastdup on the same files, alternating, in one command:

    .venv/bin/python -m bench.speed [--repeats 3] [--tiles 10000] [--only quality|tiles] [--no-reruns]
                                    [--work DIR] [--results DIR] [--rsscn7 DIR]

Two datasets:

- ``quality``: the quality benchmark's files (``bench/dataset.py``: 400 px RSSCN7 tiles with injected copies,
  defects, corrupt files and photos; built under ``--work``, outside the repository);
- ``tiles``: ``--tiles`` generated 128 px tiles (``bench/scale.py``'s generator), 80 % in ``train/<label>/``,
  20 % in ``unlabeled/``.

On each, ``--repeats`` pairs of runs, alternating (bare fastdup, then Curate), so both see the same load; each run
is a separate process timed from start to exit:

- bare fastdup: ``fastdup.create(work_dir, input_dir=<list of the files>).run()`` with fastdup's defaults and the
  same bundled model Curate's similarity stage uses (features, kNN, statistics, components), offline
  (``SENTRY_OPT_OUT``, ``FASTDUP_PRODUCTION``, ``run_sentry=False``);
- cold Curate: ``python -m flows.curate`` on the split folders with a new, empty ``cache_dir``.

Both talk to one running Prefect server (``PREFECT_API_URL`` if it answers, else one started here on a loopback
port), so no server start is counted. Per run: wall and CPU seconds (user + system of the process and everything
it waited for), peak resident memory of the process tree, images per second and the load average; for Curate
also the stage seconds its manifest records, the start-up before the flow's first line, the rest of the flow and
the tail after it. Separately: how long ``import flows.curate`` takes. On the tiles: re-runs with the cache of the
last cold run, unchanged and with 5 % new images (each from a copy of that cache). Medians over the repeats go to
``bench/results/speed.md``; every run to ``speed.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

from bench.dataset import DEFAULT_RSSCN7, SPLITS, BenchConfig, build_dataset, load_truth
from bench.run_quality import machine
from bench.scale import BARE_FASTDUP, prefect_server, tile_pool
from bench.scale import measure as scale_measure
from bench.scale import dataset as tile_dataset
from tasks import OFFLINE_ENVIRONMENT
from tasks.schema import read_metadata

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DEFAULT_WORK = Path("/tmp/curate-speed")
DEFAULT_RESULTS = ROOT / "bench" / "results"
NEW_SHARE = 0.05


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(command: list[str], env: dict[str, str], success: tuple[int, ...] = (0,)) -> dict:
    """`bench.scale.measure` (wall seconds, exit status, peak resident memory of the process tree), plus CPU
    seconds (user + system of it and of every process it waited for), the load average before it and its start as a
    UNIX time. An exit status outside `success` raises, with the command's last output."""
    load, cpu, epoch = os.getloadavg()[0], _cpu_of_children(), time.time()
    measured = scale_measure(command, env, success)
    return {**measured, "cpu_seconds": round(_cpu_of_children() - cpu, 2), "load_before": round(load, 2),
            "started_epoch": epoch}


def bare_fastdup(files: list[Path], work: Path, env: dict[str, str]) -> dict:
    """One bare fastdup run over `files` (`BARE_FASTDUP`), in a new work folder."""
    listing, results = work / "fastdup-files.txt", work / "fastdup"
    listing.write_text("\n".join(str(path) for path in files))
    shutil.rmtree(results, ignore_errors=True)  # fastdup does nothing in a folder that holds results
    return measure([PYTHON, "-c", BARE_FASTDUP, str(listing), str(results)], env)


def curate_command(splits: dict[str, Path], out: Path, cache: Path) -> list[str]:
    command = [PYTHON, "-m", "flows.curate", "--out", str(out), "--set", f"cache_dir={cache}"]
    for name, folder in splits.items():
        command += ["--split", f"{name}={folder}"]
    return command


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def curate(splits: dict[str, Path], out: Path, cache: Path, env: dict[str, str]) -> dict:
    """One Curate run (exit 0 or 1: the gate may fail, outputs are written), with the stage seconds its manifest
    records and where the rest of the wall time went: `startup` (process start to the flow's first line: imports,
    Prefect's flow run), `flow_other` (inside the flow, outside the timed stages: the file walk, the summary) and
    `tail` (the outputs, the artifacts, Prefect's end of the run, the exit)."""
    result = measure(curate_command(splits, out, cache), env, success=(0, 1))
    meta = read_metadata(pq.read_schema(out / "manifest.parquet"))
    stages = meta["stage_seconds"]
    started, finished = _epoch(meta["run_started"]), _epoch(meta["run_finished"])
    result["stage_seconds"] = stages
    result["stage_cpu_seconds"] = meta.get("stage_cpu_seconds", {})
    result["startup"] = round(started - result["started_epoch"], 2)
    result["flow_other"] = round(finished - started - sum(stages.values()), 2)
    result["tail"] = round(result["started_epoch"] + result["seconds"] - finished, 2)
    return result


def import_seconds(env: dict[str, str]) -> dict:
    """Wall and CPU seconds of `python -c "import flows.curate"` (the command line's imports, no run)."""
    return measure([PYTHON, "-c", "import flows.curate"], env)


def running_server(env: dict[str, str]) -> bool:
    url = env.get("PREFECT_API_URL")
    if not url:
        return False
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5)
        return True
    except OSError:
        return False


def quality_dataset(rsscn7: Path, work: Path) -> tuple[dict[str, Path], list[Path]]:
    """The quality benchmark's split folders and every file below them (corrupt ones included)."""
    truth = load_truth(build_dataset(rsscn7, work / "quality", BenchConfig()))
    splits = {split: truth.dataset / split for split in SPLITS}
    return splits, sorted(path for folder in splits.values() for path in folder.rglob("*") if path.is_file())


def compare(name: str, splits: dict[str, Path], files: list[Path], work: Path, env: dict[str, str],
            repeats: int, progress) -> dict:
    """`repeats` alternating pairs of bare fastdup and cold Curate runs on the same files."""
    runs: dict[str, list[dict]] = {"bare_fastdup": [], "curate_cold": []}
    folder = work / f"runs-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for repeat in range(repeats):
        runs["bare_fastdup"].append(bare_fastdup(files, folder, env))
        progress(f"{name} #{repeat + 1}: bare fastdup {runs['bare_fastdup'][-1]['seconds']} s")
        cache = folder / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        runs["curate_cold"].append(curate(splits, folder / "out", cache, env))
        cold = runs["curate_cold"][-1]
        progress(f"{name} #{repeat + 1}: Curate cold {cold['seconds']} s ({cold['stage_seconds']})")
    return {"images": len(files), "runs": runs}


def reruns(splits: dict[str, Path], pool: list[Path], images: int, work: Path, env: dict[str, str], repeats: int,
           progress) -> dict:
    """Re-runs on the tiles, each from a copy of the last cold run's cache: unchanged, and with 5 % new images
    (added to `unlabeled/` for the run, removed after it)."""
    folder = work / "runs-tiles"
    cold_cache, cache = folder / "cache", folder / "cache-rerun"
    added = pool[images : images + int(images * NEW_SHARE)]
    runs: dict[str, list[dict]] = {"unchanged": [], "new_5pct": []}
    for repeat in range(repeats):
        for kind in runs:
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(cold_cache, cache)
            links = []
            if kind == "new_5pct":
                for index, tile in enumerate(added):
                    links.append(splits["unlabeled"] / f"new-{index}-{tile.name}")
                    os.link(tile, links[-1])
            try:
                runs[kind].append(curate(splits, folder / "out-rerun", cache, env))
            finally:
                for link in links:
                    link.unlink()
            progress(f"tiles re-run {kind} #{repeat + 1}: {runs[kind][-1]['seconds']} s")
    return {"new_images": len(added), "runs": runs}


def median(runs: list[dict], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


# The flow's stages in the order they run; any other recorded stage follows.
STAGE_ORDER = ("ingest", "similarity", "verify", "relations", "classify", "expectations")


def stage_names(runs: list[dict]) -> list[str]:
    recorded = list(runs[0]["stage_seconds"])
    return [stage for stage in STAGE_ORDER if stage in recorded] + [s for s in recorded if s not in STAGE_ORDER]


def median_stages(runs: list[dict], key: str = "stage_seconds") -> dict[str, float]:
    stages = stage_names(runs)
    return {stage: round(statistics.median(run.get(key, {}).get(stage, float("nan")) for run in runs), 2)
            for stage in stages}


def report(results: dict) -> str:
    """The Markdown summary: medians per dataset, Curate's stages, re-runs, the import time."""
    lines = [
        "# Speed benchmark (issue 24): cold Curate against bare fastdup", "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}  ",
        "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, Python {python}".format(**results["machine"]) + "  ",
        f"Prefect server: {results['prefect_server']}", "",
        f"Median of {results['repeats']} runs each, bare fastdup and Curate alternating; wall and CPU seconds of "
        "each process from start to exit; load = 1-minute load average before each run (median). "
        "Other processes on the machine can inflate both.", "",
        "| dataset | images | bare fastdup: wall s | CPU s | images/s | Curate cold: wall s | CPU s | images/s | "
        "wall ratio | CPU ratio | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["datasets"].items():
        bare, cold = entry["runs"]["bare_fastdup"], entry["runs"]["curate_cold"]
        bare_wall, cold_wall = median(bare, "seconds"), median(cold, "seconds")
        bare_cpu, cold_cpu = median(bare, "cpu_seconds"), median(cold, "cpu_seconds")
        images = entry["images"]
        load = statistics.median(run["load_before"] for run in bare + cold)
        lines.append(f"| {name} | {images:,} | {bare_wall} | {bare_cpu} | {images / bare_wall:.0f} | {cold_wall} | "
                     f"{cold_cpu} | {images / cold_wall:.0f} | **{cold_wall / bare_wall:.2f} x** | "
                     f"{cold_cpu / bare_cpu:.2f} x | {load:.1f} |")
    lines += ["", "Curate's cold runs, median seconds: start-up (process start to the flow's first line), the stages "
              "its manifest records, the rest of the flow, the tail (outputs, artifacts, exit).", ""]
    stages = stage_names(next(iter(results["datasets"].values()))["runs"]["curate_cold"])
    columns = ["startup", *stages, "flow_other", "tail"]
    lines += ["| dataset | " + " | ".join(columns) + " | wall |", "|---" * (len(columns) + 2) + "|"]
    for name, entry in results["datasets"].items():
        cold = entry["runs"]["curate_cold"]
        medians = median_stages(cold) | {key: median(cold, key) for key in ("startup", "flow_other", "tail")}
        lines.append(f"| {name} | " + " | ".join(str(medians.get(column, "")) for column in columns)
                     + f" | {median(cold, 'seconds')} |")
        if all(run.get("stage_cpu_seconds") for run in cold):
            cpu = median_stages(cold, "stage_cpu_seconds")
            lines.append(f"| {name}, CPU s of the flow's process | | " + " | ".join(str(cpu[s]) for s in stages)
                         + f" | | | {median(cold, 'cpu_seconds')} (the whole process) |")
    if "reruns" in results:
        tiles = results["datasets"]["tiles"]
        cold_wall = median(tiles["runs"]["curate_cold"], "seconds")
        lines += ["", f"Re-runs on the tiles, each with a copy of the last cold run's cache (5 % new: "
                  f"{results['reruns']['new_images']:,} tiles added to `unlabeled/`):", "",
                  "| run | wall s | CPU s | share of the cold run (target) | " + " | ".join(stages) + " |",
                  "|---" * (4 + len(stages)) + "|"]
        for kind, target in (("unchanged", "10 %"), ("new_5pct", "20 %")):
            runs = results["reruns"]["runs"][kind]
            wall = median(runs, "seconds")
            lines.append(f"| {kind} | {wall} | {median(runs, 'cpu_seconds')} | {wall / cold_wall:.0%} ({target}) | "
                         + " | ".join(str(median_stages(runs).get(stage, "")) for stage in stages) + " |")
    if "imports" in results:
        runs = results["imports"]
        lines += ["", f"`python -c \"import flows.curate\"` alone: {median(runs, 'seconds')} s wall, "
                  f"{median(runs, 'cpu_seconds')} s CPU (median of {len(runs)})."]
    peaks = {name: max(run["peak_rss_mib"] for run in entry["runs"]["curate_cold"])
             for name, entry in results["datasets"].items()}
    lines += ["", "Peak resident memory of Curate's process tree (largest of the cold runs): "
              + ", ".join(f"{name} {mib:,.0f} MiB" for name, mib in peaks.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command per dataset (median)")
    parser.add_argument("--tiles", type=int, default=10_000, help="generated tiles in the second dataset")
    parser.add_argument("--only", choices=("quality", "tiles"), help="one dataset only")
    parser.add_argument("--no-reruns", action="store_true", help="skip the re-runs on the tiles")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed first pair of runs on the quality files")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder, outside the repository")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where speed.md/.json go")
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7, help="RSSCN7 root (<class>/*.jpg)")
    args = parser.parse_args(argv)
    work = Path(os.path.realpath(args.work))
    work.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "bench.speed", *(sys.argv[1:] if argv is None else argv)])
    args.results.mkdir(parents=True, exist_ok=True)
    partial = args.results / "speed.partial.json"

    def progress(message: str) -> None:
        print(f"[{dt.datetime.now():%H:%M:%S} load {os.getloadavg()[0]:.1f}] {message}", flush=True)

    env = {**os.environ, **OFFLINE_ENVIRONMENT}
    server = None
    if running_server(env):
        where = f"running at {env['PREFECT_API_URL']}"
    else:
        server, env = prefect_server(work / "prefect-home")
        env.update(OFFLINE_ENVIRONMENT)
        where = f"started for the benchmark at {env['PREFECT_API_URL']} (start not counted)"
    progress(f"Prefect server {where}")
    results: dict = {"command": command, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     "machine": machine(), "prefect_server": where, "repeats": args.repeats, "datasets": {}}

    def save() -> None:
        partial.write_text(json.dumps(results, indent=1))

    try:
        results["imports"] = [import_seconds(env) for _ in range(args.repeats)]
        if args.only in (None, "quality"):
            splits, files = quality_dataset(args.rsscn7.resolve(), work)
            progress(f"quality: {len(files)} files")
            if args.warmup:
                # Untimed: numba compiles Curate's functions into its cache once per installation, and both
                # commands' files and modules come into the page cache.
                compare("warmup", splits, files, work, env, 1, progress)
            results["datasets"]["quality"] = compare("quality", splits, files, work, env, args.repeats, progress)
            save()
        if args.only in (None, "tiles"):
            pool = tile_pool(work / "pool", int(args.tiles * (1 + NEW_SHARE)))
            splits = tile_dataset(work / "tiles", pool[: args.tiles])
            progress(f"tiles: {args.tiles} files")
            results["datasets"]["tiles"] = compare("tiles", splits, pool[: args.tiles], work, env, args.repeats,
                                                   progress)
            save()
            if not args.no_reruns:
                results["reruns"] = reruns(splits, pool, args.tiles, work, env, args.repeats, progress)
                save()
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (args.results / "speed.json").write_text(json.dumps(results, indent=1))
    (args.results / "speed.md").write_text(report(results))
    partial.unlink(missing_ok=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
