"""Leak-free splits and export, in one command (issue 22):

    .venv/bin/python -m bench.splits [--rsscn7 DIR] [--work DIR] [--results DIR] [--seed N] [--export-files N]

Runs Curate with ``decisions.split_leak=reassign`` on (1) the quality benchmark's dataset (train, val, unlabeled)
and (2) tiled scenes (the 25 % tiling of the tiling benchmark) whose tiles are spread at random over train, val and
test (70/15/15 of the tiles, so that most scenes straddle splits), once with test fixed (the default: tiles that
share its ground are dropped) and once with no fixed split, and scores each run (`split_scores`): relations and true
related pairs that join kept files of different curated splits, files moved and from where to where, files dropped
for leakage, each split's size and each labeled split's class shares against the input, unlabeled files in labeled
splits. Then (3) times `python -m flows.export` on ``--export-files`` generated files in each mode and checks that
every source's bytes and modification time are unchanged. Writes ``splits.md`` and ``splits.json`` to --results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from bench.dataset import DEFAULT_RSSCN7, BenchConfig, build_dataset, load_overlaps, load_truth
from bench.run_quality import DEFAULT_RESULTS, machine, ratio_text, run_curate
from bench.score import truth_relations
from bench.tiling import TILINGS, build_tiled_dataset, draw_scenes, truth_pairs

DEFAULT_WORK = Path("/tmp/curate-bench-splits")
REASSIGN = ("decisions.split_leak=reassign",)
TILE_SPLITS = (("train", 0.70), ("val", 0.15), ("test", 0.15))


def _crossing(manifest: pd.DataFrame, a: pd.Series, b: pd.Series, evaluation: tuple[str, ...]) -> dict:
    """Pairs (paths `a`, `b`) whose files lie in different curated splits: all of them, those with both files kept,
    and those of kept files where one split is an evaluation split (a leak)."""
    split = manifest.set_index("path")["curated_split"]
    kept = manifest.set_index("path")["action"] == "keep"
    split_a, split_b = split.reindex(a).to_numpy(), split.reindex(b).to_numpy()
    apart = split_a != split_b
    both_kept = kept.reindex(a).fillna(False).to_numpy(bool) & kept.reindex(b).fillna(False).to_numpy(bool)
    evaluated = pd.Series(split_a).isin(evaluation).to_numpy() | pd.Series(split_b).isin(evaluation).to_numpy()
    return {"pairs": int(len(a)), "apart": int(apart.sum()), "apart_kept": int((apart & both_kept).sum()),
            "apart_kept_evaluation": int((apart & both_kept & evaluated).sum())}


def _shares(frame: pd.DataFrame, split_column: str) -> pd.DataFrame:
    """Each labeled split's class shares (rows: split, columns: label)."""
    labeled = frame[frame["label"].notna()]
    return pd.crosstab(labeled[split_column], labeled["label"], normalize="index")


def split_scores(manifest: pd.DataFrame, pairs: pd.DataFrame, truth: pd.DataFrame,
                 evaluation: tuple[str, ...] = ("test", "val", "valid", "validation")) -> dict:
    """The leak-free split scores of one reassign run: `manifest` and `pairs` as Curate wrote them (paths real),
    `truth` the true related pairs (columns a, b)."""
    moved = manifest[manifest["split"] != manifest["curated_split"]]
    given, curated = manifest["split"].value_counts(), manifest["curated_split"].value_counts()
    sizes = pd.DataFrame({"given": given, "curated": curated}).fillna(0).astype(int)
    sizes["change"] = (sizes["curated"] - sizes["given"]) / sizes["given"].where(sizes["given"] > 0)
    before, after = _shares(manifest, "split"), _shares(manifest, "curated_split")
    after = after.reindex(index=before.index, columns=before.columns, fill_value=0.0)
    labeled_splits = set(manifest.loc[manifest["label"].notna(), "split"])
    unlabeled_in_labeled = manifest["label"].isna() & manifest["curated_split"].isin(labeled_splits - set(
        manifest.loc[manifest["label"].isna(), "split"]))
    return {
        "files": len(manifest),
        "relations_across": _crossing(manifest, pairs["path_a"], pairs["path_b"], evaluation),
        "true_pairs_across": _crossing(manifest, truth["a"], truth["b"], evaluation),
        "moved": int(len(moved)),
        "moves": {f"{a} -> {b}": int(n) for (a, b), n in moved.value_counts(["split", "curated_split"]).items()},
        "leak_drops": int((manifest["action"].eq("drop") & manifest["reason"].str.startswith("split leak")).sum()),
        "sizes": sizes.reset_index(names="split").to_dict("records"),
        "largest_size_change": float(sizes["change"].abs().max()),
        "largest_class_share_change": float((after - before).abs().to_numpy().max()) if before.size else 0.0,
        "unlabeled_in_labeled_splits": int(unlabeled_in_labeled.sum()),
    }


def tiles_spread(rsscn7: Path, work: Path, seed: int) -> tuple[Path, pd.DataFrame]:
    """The 25 % tiling of 42 scenes with each tile drawn into train, val or test (`TILE_SPLITS`); its dataset
    folder and true related pairs."""
    rng = np.random.default_rng(seed)
    names, weights = zip(*TILE_SPLITS)
    drawn: dict[tuple[str, int, int], str] = {}

    def split_of(scene: str, row: int, col: int) -> str:
        return drawn.setdefault((scene, row, col), str(rng.choice(names, p=weights)))

    scenes = draw_scenes(rsscn7, 42, seed, set(load_overlaps()["a"]) | set(load_overlaps()["b"]))
    root = work / "tiles" / "dataset"
    tiles = build_tiled_dataset(rsscn7, scenes, TILINGS[0], split_of, root)
    return root, truth_pairs(tiles)


def export_timing(work: Path, count: int) -> list[dict]:
    """Time `flows.export` on `count` generated files in each mode, from a minimal curated output; check that no
    source's bytes or modification time changed."""
    from tasks.export import export_splits
    from tasks.schema import MANIFEST_COLUMNS, to_table

    root = work / "export-sources"
    shutil.rmtree(root, ignore_errors=True)
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    rows = []
    for index in range(count):
        label = f"class{index % 7}"
        path = root / "train" / label / f"tile_{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if index == 0:
            Image.fromarray(pixels).save(path, quality=90)
        else:
            shutil.copyfile(root / "train" / "class0" / "tile_000000.jpg", path)
        rows.append({"path": str(path), "split": "train", "curated_split": "train", "label": label, "valid": True,
                     "issues": [], "action": "keep", "reason": "no issue"})
    manifest = pd.DataFrame(rows).reindex(columns=MANIFEST_COLUMNS)
    out = work / "export-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pq.write_table(to_table(manifest, {}), out / "manifest.parquet")  # what read_manifest needs of an output
    before = {row["path"]: (os.stat(row["path"]).st_mtime_ns, Path(row["path"]).read_bytes()) for row in rows}
    results = []
    for mode in ("hardlink", "symlink", "copy"):
        start = time.perf_counter()
        exported = export_splits(out, work / f"export-{mode}", mode, replace=True)
        seconds = time.perf_counter() - start
        unchanged = all((os.stat(path).st_mtime_ns, Path(path).read_bytes()) == state for path, state in before.items())
        results.append({"mode": mode, "files": sum(exported.files.values()), "seconds": round(seconds, 2),
                        "sources_unchanged": unchanged})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Curate leak-free splits benchmark")
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--seed", type=int, default=20241206, help="seed of the tiles' splits and scene draw")
    parser.add_argument("--export-files", type=int, default=10_000)
    args = parser.parse_args(argv)
    work, rsscn7 = args.work.resolve(), args.rsscn7.resolve()
    runs: dict[str, dict] = {}

    truth = load_truth(build_dataset(rsscn7, Path("/tmp/curate-bench"), BenchConfig()))
    related = truth_relations(truth.files, truth.pairs, load_overlaps(), 0.75)
    tiles_root, tile_truth = tiles_spread(rsscn7, work, args.seed)
    tile_splits = ("train", "val", "test")
    for name, dataset, splits, true_pairs, settings in (
            ("quality", truth.dataset, ("train", "val", "unlabeled"), related, REASSIGN),
            ("tiles, test fixed", tiles_root, tile_splits, tile_truth, REASSIGN),
            ("tiles, no fixed split", tiles_root, tile_splits, tile_truth, (*REASSIGN, "decisions.fixed_splits=[]"))):
        out = work / name.replace(",", "").replace(" ", "-") / "curate-out"
        manifest, pairs, facts = run_curate(dataset, out, splits, settings)
        if manifest is None:
            print(f"{name}: not scored: {facts['skipped']}", flush=True)
            return 1
        runs[name] = {"curate": {k: v for k, v in facts.items() if k != "manifest_metadata"},
                      "scores": split_scores(manifest, pairs, true_pairs)}
        print(f"{name}: exit {facts['exit_status']}, {json.dumps(runs[name]['scores'])}", flush=True)
    exports = export_timing(work, args.export_files)
    print(f"export: {exports}", flush=True)

    command = shlex.join(["python", "-m", "bench.splits", *(sys.argv[1:] if argv is None else argv)])
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    lines = ["# Curate leak-free splits benchmark", f"Command: `{command}`  \nDate: {date}  \n"
             + "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, Python {python}".format(**machine()),
             "| run | relations across curated splits (kept, into an evaluation split) | true pairs across (kept, "
             "into evaluation) | moved | leak drops | largest size change | largest class-share change | "
             "unlabeled in labeled splits | gate |", "|---|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        s = run["scores"]
        rel, true = s["relations_across"], s["true_pairs_across"]
        lines.append(f"| {name} | {rel['apart']} of {rel['pairs']} ({rel['apart_kept']}, "
                     f"{rel['apart_kept_evaluation']}) | {true['apart']} of {true['pairs']} ({true['apart_kept']}, "
                     f"{true['apart_kept_evaluation']}) | {ratio_text(s['moved'] / s['files'], s['moved'], s['files'])}"
                     f" {s['moves']} | {s['leak_drops']} | {s['largest_size_change']:.3f} | "
                     f"{s['largest_class_share_change']:.3f} | {s['unlabeled_in_labeled_splits']} | "
                     f"exit {run['curate']['exit_status']} |")
    lines += ["", "| export mode | files | seconds | sources unchanged (bytes, mtime) |", "|---|---|---|---|"]
    lines += [f"| {e['mode']} | {e['files']:,} | {e['seconds']} | {e['sources_unchanged']} |" for e in exports]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "splits.md").write_text("\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    (args.results / "splits.json").write_text(json.dumps({"command": command, "date": date, "machine": machine(),
                                                          "runs": runs, "export": exports}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
