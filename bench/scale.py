"""Issue 4's speed and memory benchmark: Curate against bare fastdup, re-runs with the content cache, and peak
memory as the dataset grows. One command (not part of the unit tests):

    .venv/bin/python -m bench.scale [--images 10000] [--memory-images 25000 100000] [--work DIR]

All runs use generated 128 x 128 JPEG tiles (`make_tile`: coloured multi-scale noise, distinct per seed), made
once into a pool under `--work` and hard-linked into each run's folders, so every measure is taken on the same
files. Every run is a separate process timed from start to exit, everything included:

- bare fastdup: `fastdup.create(...).run()` on the files (features, kNN, statistics, components);
- Curate cold: `python -m flows.curate` with an empty cache folder;
- Curate re-run: the same command again, nothing changed;
- Curate re-run with 5 % new images added;
- Curate cold at each `--memory-images` size, for peak memory: the largest total resident memory of the run's
  process tree, sampled every 0.2 s.

The Curate runs talk to a Prefect server started here on a loopback port (as scheduled runs do), so the
temporary server a lone command starts (6 to 20 s) is not counted; `prefect_start_seconds` reports what it costs.
Results go to `bench/results/scale.json` and `scale.md`.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
from PIL import Image

from tasks.schema import read_metadata

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TILE = 128
LABELS = ("field", "forest", "water", "urban")

BARE_FASTDUP = """
import os, sys
os.environ["SENTRY_OPT_OUT"] = "1"; os.environ["FASTDUP_PRODUCTION"] = "1"
import fastdup
files = open(sys.argv[1]).read().split("\\n")
fastdup.create(work_dir=sys.argv[2], input_dir=files).run(overwrite=True, run_sentry=False, print_summary=False,
                                                           verbose=False)
"""


def make_tile(seed: int) -> Image.Image:
    """A distinct aerial-looking tile: coarse colour regions, mid-scale texture and fine grain."""
    rng = np.random.default_rng(seed)

    def noise(cells: int, channels: int) -> np.ndarray:
        small = Image.fromarray((rng.random((cells, cells, channels)).squeeze() * 255).astype(np.uint8))
        return np.asarray(small.resize((TILE, TILE), Image.Resampling.BICUBIC), np.float32).reshape(TILE, TILE, -1)

    pixels = 0.6 * noise(4, 3) + 0.3 * noise(16, 1) + 0.1 * noise(64, 1) + rng.normal(0, 6, (TILE, TILE, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_tiles(task: tuple[Path, range]) -> None:
    folder, seeds = task
    for seed in seeds:
        make_tile(seed).save(folder / f"{seed:07d}.jpg", quality=88)


def tile_pool(folder: Path, count: int) -> list[Path]:
    """`count` tiles in `folder`, made once (a larger pool is reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    present = len(list(folder.glob("*.jpg")))
    if present < count:
        step = 2000
        work = [(folder, range(start, min(start + step, count))) for start in range(present, count, step)]
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(_write_tiles, work))
    return [folder / f"{seed:07d}.jpg" for seed in range(count)]


def dataset(root: Path, tiles: list[Path]) -> dict[str, Path]:
    """Hard links to `tiles` in train/<label>/ (80 %) and unlabeled/ (20 %); returns the split folders."""
    if root.exists():
        shutil.rmtree(root)
    splits = {"train": root / "train", "unlabeled": root / "unlabeled"}
    for index, tile in enumerate(tiles):
        folder = splits["unlabeled"] if index % 5 == 4 else splits["train"] / LABELS[index % len(LABELS)]
        folder.mkdir(parents=True, exist_ok=True)
        os.link(tile, folder / tile.name)
    return splits


def measure(command: list[str], env: dict[str, str], success: tuple[int, ...] = (0,)) -> dict:
    """Run a command; its wall time, exit status and the peak resident memory of its whole process tree (and
    when it was reached, in seconds from the start). An exit status outside `success` raises, with the
    command's last output."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched = psutil.Process(process.pid)
    peak, peak_at = 0, 0.0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            resident = sum(member.memory_info().rss for member in tree if member.is_running())
            if resident > peak:
                peak, peak_at = resident, time.perf_counter() - started
        except psutil.Error:
            pass
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode(errors="replace")
    if process.returncode not in success:
        raise RuntimeError(f"{command[:3]} exited {process.returncode}:\n{output[-3000:]}")
    return {"seconds": round(seconds, 2), "exit": process.returncode, "peak_rss_mib": round(peak / 2**20, 1),
            "peak_at_seconds": round(peak_at, 1)}


def curate(splits: dict[str, Path], out: Path, cache: Path, env: dict[str, str]) -> dict:
    command = [PYTHON, "-m", "flows.curate", "--out", str(out), "--set", f"cache_dir={cache}"]
    for name, folder in splits.items():
        command += ["--split", f"{name}={folder}"]
    result = measure(command, env, success=(0, 1))  # 1: the gate failed, outputs written
    result["stage_seconds"] = read_metadata(pq.read_schema(out / "manifest.parquet"))["stage_seconds"]
    return result


def bare_fastdup(tiles: list[Path], work: Path, env: dict[str, str]) -> dict:
    listing, results = work / "files.txt", work / "fastdup"
    listing.write_text("\n".join(str(tile) for tile in tiles))
    shutil.rmtree(results, ignore_errors=True)  # fastdup refuses a list of files in a folder it has used before
    return measure([PYTHON, "-c", BARE_FASTDUP, str(listing), str(results)], env)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prefect_server(home: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """A Prefect server on a loopback port, and the environment that sends runs to it."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    server = subprocess.Popen(
        [str(Path(PYTHON).with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--analytics-off", "--no-ui"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return server, env
        except OSError:
            time.sleep(1)
    server.kill()
    raise RuntimeError("the Prefect server did not start within 120 s")


def run(images: int, memory_sizes: list[int], work: Path, partial: Path | None = None) -> dict:
    """Every measurement, in a dict; with `partial`, the dict so far is also written there (JSON) after each
    one, so that a long run that is stopped keeps what it measured."""
    new_share = 0.05
    pool = tile_pool(work / "pool", max([int(images * (1 + new_share)), *memory_sizes]))
    server, env = prefect_server(work / "prefect-home")
    results: dict = {"images": images, "machine": _machine(), "started": datetime.now(timezone.utc).isoformat()}
    try:
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        splits = dataset(work / "data", pool[:images])
        results["bare_fastdup"] = bare_fastdup(pool[:images], work, env)
        _save(results, partial)
        results["cold"] = curate(splits, work / "out", cache, env)
        _save(results, partial)
        results["rerun_unchanged"] = curate(splits, work / "out", cache, env)
        _save(results, partial)
        added = pool[images : int(images * (1 + new_share))]
        for index, tile in enumerate(added):
            os.link(tile, splits["unlabeled"] / f"new-{index}-{tile.name}")
        results["rerun_5pct_new"] = curate(splits, work / "out", cache, env)
        results["rerun_5pct_new"]["new_images"] = len(added)
        _save(results, partial)
        results["memory"] = {}
        for size in memory_sizes:
            memory_cache = work / f"cache-{size}"
            shutil.rmtree(memory_cache, ignore_errors=True)
            folders = dataset(work / f"data-{size}", pool[:size])
            results["memory"][str(size)] = curate(folders, work / f"out-{size}", memory_cache, env)
            _save(results, partial)
            shutil.rmtree(work / f"data-{size}")
    finally:
        server.terminate()
        server.wait(30)
    lone = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    lone["PREFECT_HOME"] = str(work / "prefect-home-lone")
    results["prefect_start_seconds"] = measure([PYTHON, "-c", "import tasks\nfrom prefect import flow\n"
                                                "flow(lambda: None, name='empty')()"], lone)["seconds"]
    return results


def _save(results: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))


def _machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {memory:.1f} GiB, " \
           f"Python {platform.python_version()}"


def report(results: dict) -> str:
    bare, cold = results["bare_fastdup"]["seconds"], results["cold"]["seconds"]
    images = results["images"]
    lines = [
        f"# Scale benchmark ({results['started'][:16]} UTC, {results['machine']})", "",
        f"{images:,} generated tiles; every figure is one run's wall time, process start to exit.", "",
        "| run | seconds | images/s | vs reference | peak RSS (MiB) |", "| --- | --- | --- | --- | --- |",
        f"| bare fastdup | {bare} | {images / bare:.1f} | | {results['bare_fastdup']['peak_rss_mib']} |",
        f"| Curate, cold | {cold} | {images / cold:.1f} | +{(cold / bare - 1) * 100:.0f} % over bare fastdup | "
        f"{results['cold']['peak_rss_mib']} |",
    ]
    for key, label in (("rerun_unchanged", "re-run, unchanged"), ("rerun_5pct_new", "re-run, 5 % new images")):
        seconds = results[key]["seconds"]
        lines.append(f"| Curate, {label} | {seconds} | | {seconds / cold * 100:.0f} % of the cold run | "
                     f"{results[key]['peak_rss_mib']} |")
    lines += ["", "Stage seconds (manifest metadata):", "", "| run | " + " | ".join(results["cold"]["stage_seconds"])
              + " |", "| --- " * (len(results["cold"]["stage_seconds"]) + 1) + "|"]
    for key in ("cold", "rerun_unchanged", "rerun_5pct_new", *[f"memory {size}" for size in results["memory"]]):
        entry = results["memory"][key.split()[1]] if key.startswith("memory") else results[key]
        lines.append(f"| {key} | " + " | ".join(str(entry["stage_seconds"].get(stage, "")) for stage in
                                                 results["cold"]["stage_seconds"]) + " |")
    lines += ["", "| images (cold run) | seconds | peak RSS of the run's process tree (MiB) |", "| --- | --- | --- |"]
    lines.append(f"| {images:,} | {cold} | {results['cold']['peak_rss_mib']} |")
    for size, entry in results["memory"].items():
        lines.append(f"| {int(size):,} | {entry['seconds']} | {entry['peak_rss_mib']} |")
    lines += ["", f"A lone command's temporary Prefect server (not counted above): "
              f"{results['prefect_start_seconds']} s for an empty flow."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--memory-images", type=int, nargs="*", default=[25_000, 100_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate-scale"))
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    results = run(args.images, args.memory_images, args.work, partial=args.results / "scale.partial.json")
    _save(results, args.results / "scale.json")
    (args.results / "scale.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
