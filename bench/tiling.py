"""Tiled scenes, in one command: are overlapping tiles of one split kept, and do tiles leak into validation?

    .venv/bin/python -m bench.tiling [--rsscn7 DIR] [--work DIR] [--results DIR] [--seed N] [--scenes N]
                                     [--only NAME ...]

Training tiles are usually cut from large scenes with overlap (stride below the tile side). Each of ``--scenes``
RSSCN7 images (default 42, 6 per class, drawn with ``--seed``; tiles listed in ``rsscn7_overlaps.csv`` are left
out, so that no two scenes share ground) is treated as a scene and cut into 3 x 3 tiles by two tilings:

- ``25``: tiles of 160 px at a 120 px stride (side neighbours share 25 % of the side: 0.25 of each tile,
  diagonal neighbours 0.0625);
- ``50``: tiles of 200 px at a 100 px stride (side neighbours 0.5, diagonal neighbours 0.25).

Each tiling is placed two ways, each its own dataset and its own Curate run (``--only`` picks runs by name,
tiling or placement, e.g. ``--only 25-one-split`` or ``--only with-val``):

- ``one-split``: every tile in ``train/<class>/``;
- ``with-val``: a seeded third of the scenes of each class (at least one) have one or two of their tiles in
  ``val/<class>/``, the rest in ``train/``; the same scenes and tile positions for both tilings.

Tiles are JPEG quality 90, named ``<scene-stem>_r<row>_c<col>.jpg``, under ``<work>/<run>/dataset`` (outside the
repository: the tiles carry no licence). The truth is plain rectangle arithmetic: every pair of tiles of one
scene whose footprints intersect, with the intersection's share of each tile's area (``<work>/<run>/truth/``).
Curate runs as a subprocess (``python -m flows.curate --set cache_dir=null``) on the splits present, and its
``manifest.parquet`` and ``pairs.parquet`` are scored by ``bench/tiling_score.py``. Writes
``bench/results/tiling.md`` and ``bench/results/tiling.json``. Not part of the unit tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.dataset import DEFAULT_RSSCN7, list_tiles, load_overlaps
from bench.run_quality import DEFAULT_RESULTS, ratio_text, machine, run_curate
from bench.tiling_score import (
    DUPLICATE_SHARE,
    EVALUATION_SPLITS,
    MIN_COVERAGE,
    SHARE_TOLERANCE,
    detectable,
    score_run,
    true_relation,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = Path("/tmp/curate-bench-tiling")
DEFAULT_SEED = 20240917
DEFAULT_SCENES = 42
SAVE_QUALITY = 90
VAL_FRACTION = 1 / 3  # share of each class's scenes that get one or two tiles in val
KEEP_TARGET = 0.99  # tiles kept when tiles of one split overlap by up to 50 %
RECALL_TARGET = 0.95  # overlapping tile pairs recorded, over detectable pairs


@dataclass(frozen=True)
class Tiling:
    """A grid x grid tiling of square tiles of ``tile`` px at ``stride`` px, centred in the scene."""

    name: str
    tile: int
    stride: int
    grid: int = 3

    @property
    def overlap(self) -> float:
        """Share of the side that side neighbours share."""
        return max(0, self.tile - self.stride) / self.tile

    @property
    def label(self) -> str:
        return f"{self.overlap:.0%} ({self.grid}x{self.grid} of {self.tile} px at {self.stride} px)"

    def boxes(self, width: int, height: int) -> dict[tuple[int, int], tuple[int, int, int, int]]:
        """Each tile's box (x0, y0, x1, y1) in a scene of this size, by (row, col)."""
        span = self.tile + (self.grid - 1) * self.stride
        if span > min(width, height):
            raise ValueError(f"tiling {self.name} spans {span} px: the scene is {width}x{height}")
        left, top = (width - span) // 2, (height - span) // 2
        return {(r, c): (left + c * self.stride, top + r * self.stride,
                         left + c * self.stride + self.tile, top + r * self.stride + self.tile)
                for r in range(self.grid) for c in range(self.grid)}


TILINGS = (Tiling("25", 160, 120), Tiling("50", 200, 100))
PLACEMENTS = ("one-split", "with-val")


def run_names(tilings: tuple[Tiling, ...] = TILINGS) -> list[tuple[str, Tiling, str]]:
    """Every run: (name, tiling, placement), e.g. ``25-one-split``."""
    return [(f"{t.name}-{p}", t, p) for t in tilings for p in PLACEMENTS]


def select_runs(only: list[str] | None) -> list[tuple[str, Tiling, str]]:
    """The runs ``--only`` names (by run name, tiling name or placement); all of them without it."""
    runs = run_names()
    if not only:
        return runs
    known = {n for n, _, _ in runs} | {t.name for t in TILINGS} | set(PLACEMENTS)
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(f"unknown run {', '.join(unknown)}: choose from {', '.join(sorted(known))}")
    return [(n, t, p) for n, t, p in runs if {n, t.name, p} & set(only)]


def intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Area shared by two boxes (x0, y0, x1, y1); 0 when they only touch or are apart."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def truth_pairs(tiles: pd.DataFrame, duplicate_share: float = DUPLICATE_SHARE,
                min_coverage: float = MIN_COVERAGE) -> pd.DataFrame:
    """Every unordered pair of tiles of one scene whose boxes intersect: a, b (paths), scene, kind (``side``: same
    row or column; ``diagonal``), share_a, share_b (intersection over each tile's area), split_a, split_b,
    cross_split, detectable (max share >= ``min_coverage``), relation (at ``duplicate_share``)."""
    rows = []
    for scene, group in tiles.groupby("scene", sort=True):
        records = group.sort_values(["row", "col"]).to_dict("records")
        for a, b in itertools.combinations(records, 2):
            box_a, box_b = (a["x0"], a["y0"], a["x1"], a["y1"]), (b["x0"], b["y0"], b["x1"], b["y1"])
            area = intersection(box_a, box_b)
            if area == 0:
                continue
            share_a = area / ((box_a[2] - box_a[0]) * (box_a[3] - box_a[1]))
            share_b = area / ((box_b[2] - box_b[0]) * (box_b[3] - box_b[1]))
            rows.append({"a": a["path"], "b": b["path"], "scene": scene,
                         "kind": "side" if a["row"] == b["row"] or a["col"] == b["col"] else "diagonal",
                         "share_a": share_a, "share_b": share_b, "split_a": a["split"], "split_b": b["split"],
                         "cross_split": a["split"] != b["split"],
                         "relation": true_relation(share_a, share_b, duplicate_share)})
    columns = ["a", "b", "scene", "kind", "share_a", "share_b", "split_a", "split_b", "cross_split", "relation"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["detectable"] = detectable(frame, min_coverage) if len(frame) else pd.Series(dtype=bool)
    return frame


def draw_scenes(rsscn7: Path, count: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """``count`` scenes (``<class>/<file>`` relative to ``rsscn7``), spread evenly over the classes (the first
    classes in name order take the remainder), drawn with ``seed`` from the images not in ``exclude``."""
    by_class: dict[str, list[str]] = {}
    for path in list_tiles(rsscn7):
        relative = path.relative_to(rsscn7).as_posix()
        if relative not in exclude:
            by_class.setdefault(relative.split("/")[0], []).append(relative)
    classes = sorted(by_class)
    rng = np.random.default_rng(seed)
    scenes = []
    for rank, label in enumerate(classes):
        want = count // len(classes) + (1 if rank < count % len(classes) else 0)
        members = by_class[label]
        picked = rng.choice(len(members), min(want, len(members)), replace=False)
        scenes += [members[k] for k in sorted(picked)]
    return scenes


def place_val(scenes: list[str], seed: int, grid: int = 3, fraction: float = VAL_FRACTION
              ) -> dict[str, list[tuple[int, int]]]:
    """The tiles that go to val: for ``fraction`` of each class's scenes (rounded, at least one), one or two tile
    positions (row, col) drawn with ``seed``. Every class with a scene gets val tiles."""
    rng = np.random.default_rng([seed, 1])
    by_class: dict[str, list[str]] = {}
    for scene in scenes:
        by_class.setdefault(scene.split("/")[0], []).append(scene)
    positions = [(r, c) for r in range(grid) for c in range(grid)]
    chosen: dict[str, list[tuple[int, int]]] = {}
    for label in sorted(by_class):
        members = sorted(by_class[label])
        count = min(len(members), max(1, round(len(members) * fraction)))
        for k in sorted(rng.choice(len(members), count, replace=False)):
            tiles = rng.choice(len(positions), int(rng.integers(1, 3)), replace=False)
            chosen[members[k]] = sorted(positions[t] for t in tiles)
    return chosen


def tile_name(scene: str, row: int, col: int, neutral: bool = False) -> str:
    """``<scene-stem>_r<row>_c<col>.jpg``, or with `neutral` a name from a hash of that, which tells nothing of
    where the tile lies (for candidates found by content alone)."""
    name = f"{Path(scene).stem}_r{row}_c{col}"
    return f"tile_{hashlib.sha1(name.encode()).hexdigest()[:10]}.jpg" if neutral else f"{name}.jpg"


def build_tiled_dataset(rsscn7: Path, scenes: list[str], tiling: Tiling,
                        val_tiles: dict[str, list[tuple[int, int]]] | Callable[[str, int, int], str],
                        root: Path, neutral_names: bool = False) -> pd.DataFrame:
    """Write every scene's tiles under ``root/<split>/<class>/`` (anything there before is removed); return one row
    per tile: path (real), relpath, split, label, scene, row, col, x0, y0, x1, y1. ``val_tiles`` names each scene's
    tiles in val (the others go to train), or gives each tile's split (scene, row, col -> split)."""
    shutil.rmtree(root, ignore_errors=True)
    rows = []
    for scene in scenes:
        label = scene.split("/")[0]
        image = Image.open(rsscn7 / scene).convert("RGB")
        in_val = set(val_tiles.get(scene, [])) if isinstance(val_tiles, dict) else set()
        for (r, c), box in tiling.boxes(*image.size).items():
            split = val_tiles(scene, r, c) if callable(val_tiles) else "val" if (r, c) in in_val else "train"
            dest = root / split / label / tile_name(scene, r, c, neutral_names)
            dest.parent.mkdir(parents=True, exist_ok=True)
            image.crop(box).save(dest, format="JPEG", quality=SAVE_QUALITY)
            rows.append({"path": os.path.realpath(dest), "relpath": dest.relative_to(root).as_posix(),
                         "split": split, "label": label, "scene": scene, "row": r, "col": c,
                         "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]})
    return pd.DataFrame(rows)


def recorded_settings(metadata: dict) -> dict:
    """duplicate_share, overlap_min_coverage and evaluation_splits from the manifest's recorded configuration
    (``curate`` -> ``config``), each with where it came from (``recorded`` or this module's ``default``)."""
    config = metadata.get("curate", {}).get("config", {}) if isinstance(metadata.get("curate"), dict) else {}
    decisions, verification = config.get("decisions", {}), config.get("verification", {})
    out = {}
    for name, section, key, default in (("duplicate_share", decisions, "duplicate_share", DUPLICATE_SHARE),
                                        ("min_coverage", verification, "overlap_min_coverage", MIN_COVERAGE),
                                        ("evaluation_splits", decisions, "evaluation_splits",
                                         list(EVALUATION_SPLITS))):
        out[name] = section.get(key, default)
        out[f"{name}_from"] = "recorded" if key in section else "default"
    return out


def truth_summary(tiles: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Tiles per split, and true pairs per kind with their shares, detectable and cross-split counts."""
    kinds = {}
    for kind, group in truth.groupby("kind"):
        kinds[kind] = {"pairs": len(group), "detectable": int(group["detectable"].sum()),
                       "cross_split": int(group["cross_split"].sum()),
                       "shares": sorted({round(s, 4) for s in pd.concat([group["share_a"], group["share_b"]])}),
                       "relations": group["relation"].value_counts().to_dict()}
    return {"tiles": len(tiles), "scenes": int(tiles["scene"].nunique()),
            "tiles_by_split": tiles["split"].value_counts().to_dict(),
            "val_classes": sorted(tiles.loc[tiles["split"] == "val", "label"].unique()),
            "true_pairs": len(truth), "detectable_pairs": int(truth["detectable"].sum()), "by_kind": kinds}


# --- report -------------------------------------------------------------------------------------------------------

def _r(cell: dict | None) -> str:
    """A ratio cell of tiling_score (num, den, ratio)."""
    return "n/a" if cell is None else ratio_text(cell["ratio"], cell["num"], cell["den"])


def _counts(counts: dict | None) -> str:
    return "none" if not counts else ", ".join(f"{k}: {v}" for k, v in counts.items())


def _target(value: float | None, ok: bool) -> str:
    return "n/a" if value is None else ("met" if ok else "**missed**")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def report_tables(runs: dict[str, dict]) -> str:
    """The markdown tables, one row per run."""
    scored = {n: r for n, r in runs.items() if r.get("scores")}
    skipped = [f"- `{n}`: {r['curate'].get('skipped')}" for n, r in runs.items() if not r.get("scores")]
    parts = []
    if skipped:
        parts.append("Runs not scored (no manifest):\n\n" + "\n".join(skipped))

    def pairs_of(s: dict, *keys: str) -> dict | None:
        value = s["pairs"]
        for key in keys:
            if value is None:
                return None
            value = value[key]
        return value

    rows = []
    for name, run in scored.items():
        s, exit_status = run["scores"], run["curate"]["exit_status"]
        kept = s["keep"]["kept"]
        recall = pairs_of(s, "recall", "detectable")
        leaks = s["leaks"]["kept_cross_pairs"]["all"]
        rows.append([
            name,
            f"{_r(kept)} {_target(kept['ratio'], (kept['ratio'] or 0) >= KEEP_TARGET)}"
            if run["placement"] == "one-split" else f"{_r(kept)} (target is for one split)",
            "n/a (no pairs.parquet)" if recall is None
            else f"{_r(recall)} {_target(recall['ratio'], (recall['ratio'] or 0) >= RECALL_TARGET)}",
            f"{leaks['num']} {_target(0, leaks['num'] == 0)}" if leaks["den"] else "0 (no train-val pairs)",
            f"{exit_status} {_target(0, exit_status == 0)}"])
    parts.append("### Targets\n\nTiles kept: >= 99 % when tiles of one split overlap (one-split runs). Pairs "
                 "recorded: >= 95 % of the true pairs the verifier looks for (max share >= "
                 "`verification.overlap_min_coverage`). Kept train-val pairs sharing ground: true pairs of a kept "
                 "train tile and a kept val tile, any share (0). Gate: exit status 0.\n\n"
                 + _table(["run", "tiles kept", "pairs recorded (detectable)", "kept train-val pairs sharing ground",
                           "gate exit status"], rows))

    rows = []
    for name, run in scored.items():
        s = run["scores"]
        rows.append([name, run["truth"]["tiles"], _counts(run["truth"]["tiles_by_split"]), _r(s["keep"]["kept"]),
                     _r(s["keep"]["kept_of_should_keep"]), _counts(s["drops"]["by_action"]),
                     run["curate"]["exit_status"], f"{run['curate']['seconds']:.1f}"])
    parts.append("### Keep and gate\n\n'Kept of should keep': every val tile and every train tile sharing no "
                 "ground with a val tile.\n\n"
                 + _table(["run", "tiles", "by split", "kept", "kept of should keep", "not kept", "gate exit status",
                           "wall time (s)"], rows))

    rows = []
    for name, run in scored.items():
        s = run["scores"]
        if s["pairs"] is None:
            rows.append([name, *["n/a (no pairs.parquet)"] * 12])
            continue
        p = s["pairs"]
        by_kind = p["recall_by_kind"]
        cells = [_r(p["recall"]["detectable"]), _r(p["recall"]["all"])]
        for kind in ("side", "diagonal", "into evaluation"):
            cells += ([_r(by_kind[kind]["detectable"]), _r(by_kind[kind]["all"])] if kind in by_kind
                      else ["n/a", "n/a"])
        mae = "n/a" if p["share_mae"] is None else f"{p['share_mae']:.3f} (max {p['share_max_error']:.3f})"
        rows.append([name, *cells, _r(p["precision"]),
                     f"{p['false_pairs_count']} ({_counts(p['false_pairs_by_why'])})", mae,
                     p["shares_off"]["count"]])
    parts.append("### Pairs in pairs.parquet\n\nRecall of the true pairs (unordered): 'detectable' counts only "
                 "pairs whose shared ground covers at least `verification.overlap_min_coverage` (0.1) of a tile, "
                 "which the verifier looks for (the target is over these); 'all' counts every intersecting pair. "
                 "Side neighbours share a row or column; 'into val' pairs join a train tile and a val tile. "
                 "Precision: recorded pairs that are true pairs. Share MAE: mean absolute error of the recorded "
                 f"share_a/share_b of found pairs; 'shares off': found pairs with a share off by more than "
                 f"{SHARE_TOLERANCE}.\n\n"
                 + _table(["run", "recall (detectable)", "recall (all)", "side (detectable)", "side (all)",
                           "diagonal (detectable)", "diagonal (all)", "into val (detectable)", "into val (all)",
                           "precision", "false pairs", "share MAE", "shares off"], rows))

    rows = []
    for name, run in scored.items():
        p = run["scores"]["pairs"]
        cells = "n/a (no pairs.parquet)" if p is None else "; ".join(
            f"{want} -> {got}: {count}" for want, row in p["relation_confusion"].items() for got, count in row.items())
        rows.append([name, run["scores"]["duplicate_share"], cells])
    parts.append("### Relations\n\nTrue relation (duplicate when both shares >= `decisions.duplicate_share`, else "
                 "overlap; none: not a true pair) -> recorded relation (none: not recorded).\n\n"
                 + _table(["run", "duplicate_share", "true -> recorded: pairs"], rows))

    rows = []
    for name, run in scored.items():
        lk = run["scores"]["leaks"]
        flagged = lk.get("leak_flagged")
        rows.append([name, _r(lk["kept_cross_pairs"]["all"]), _r(lk["kept_cross_pairs"]["detectable"]),
                     _r(lk["removed"]["all"]), _r(lk["removed"]["detectable"]),
                     "n/a (no leaks_into column)" if flagged is None
                     else f"{flagged['count']} ({_counts(flagged['by_action'])})",
                     "n/a" if flagged is None else lk["leak_drops"],
                     "n/a" if flagged is None else lk["false_leaks"]["count"],
                     "n/a" if flagged is None else lk["wrong_target"]["count"]])
    parts.append("### Leaks into val\n\n'Kept train-val pairs': true pairs of a train and a val tile with both "
                 "kept, over all such pairs and over detectable ones (target 0). 'Removed': train tiles truly "
                 "sharing ground with a kept val tile that are not kept. 'Flagged': train tiles with `leaks_into` "
                 "set; a false leak shares no true ground with any kept val tile; a wrong target is a `leaks_into` "
                 "naming a file the tile shares no true ground with.\n\n"
                 + _table(["run", "kept train-val pairs (all)", "kept train-val pairs (detectable)",
                           "removed (all)", "removed (detectable)", "flagged (by action)", "leak drops",
                           "false leaks", "wrong targets"], rows))

    rows = [[name, _counts(run["scores"]["drops"]["by_reason"])] for name, run in scored.items()]
    parts.append("### Files not kept, by reason\n\nPaths in reasons are shown as `<file>`, numbers as `<n>`.\n\n"
                 + _table(["run", "reasons: files"], rows))
    return "\n\n".join(parts)


def report_lists(runs: dict[str, dict], root: Path) -> str:
    """A few examples of each error per run, relative to the work folder."""
    def rel(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    parts = []
    for name, run in runs.items():
        s = run.get("scores")
        if not s:
            continue
        lines = []
        p = s["pairs"]
        if p is not None:
            lines += [f"- false pair ({f['why']}, {f['relation']}): `{rel(f['a'])}` ~ `{rel(f['b'])}`"
                      for f in p["false_pairs"]]
            lines += [f"- share off ({o['kind']}, {o['evidence']}, {o['relation']}): true "
                      f"{o['true'][0]:.3f}/{o['true'][1]:.3f}, recorded {o['recorded'][0]:.3f}/{o['recorded'][1]:.3f}: "
                      f"`{rel(o['a'])}` ~ `{rel(o['b'])}`" for o in p["shares_off"]["list"]]
            lines += [f"- missed detectable pair ({m['kind']}, shares {m['share_a']:.3f}/{m['share_b']:.3f}): "
                      f"`{rel(m['a'])}` ~ `{rel(m['b'])}`" for m in p["missed_detectable"]]
        lk = s["leaks"]
        lines += [f"- kept train-val pair ({k['kind']}, share {k['share']:.4f}"
                  f"{'' if k['detectable'] else ', not detectable'}): `{rel(k['train'])}` ~ `{rel(k['evaluation'])}`"
                  for k in lk["kept_cross_pair_list"]]
        if lk.get("leak_flagged") is not None:
            lines += [f"- false leak ({f['action']}): `{rel(f['path'])}` -> `{rel(str(f['leaks_into']))}`"
                      for f in lk["false_leaks"]["list"]]
        if lines:
            parts.append(f"### {name}\n\n" + "\n".join(lines))
    return "\n\n".join(parts) if parts else "None."


def main(argv: list[str] | None = None) -> int:
    """Build the datasets, run Curate on each, score and write the reports; return 1 when a run could not be
    scored in full (no manifest or no pairs.parquet), else 0 (whether or not the targets are met)."""
    parser = argparse.ArgumentParser(description="Curate tiled-scenes benchmark")
    parser.add_argument("--rsscn7", type=Path, default=DEFAULT_RSSCN7, help="RSSCN7 root (<class>/*.jpg)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder, outside the repository")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where tiling.md/.json go")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the scene draw and val placement")
    parser.add_argument("--scenes", type=int, default=DEFAULT_SCENES, help="scenes, spread evenly over the classes")
    parser.add_argument("--neutral-names", action="store_true",
                        help="name tiles by a hash, not by scene, row and column: candidates by content alone")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these (repeatable): a run (" + ", ".join(n for n, _, _ in run_names())
                             + "), a tiling (" + ", ".join(t.name for t in TILINGS) + ") or a placement ("
                             + ", ".join(PLACEMENTS) + ")")
    args = parser.parse_args(argv)
    try:
        selected = select_runs(args.only)
    except ValueError as error:
        parser.error(str(error))
    rsscn7 = args.rsscn7.resolve()
    work = Path(os.path.realpath(args.work))

    overlaps = load_overlaps()
    scenes = draw_scenes(rsscn7, args.scenes, args.seed, set(overlaps["a"]) | set(overlaps["b"]))
    val_tiles = place_val(scenes, args.seed)
    print(f"{len(scenes)} scenes; {len(val_tiles)} with val tiles in the with-val runs", flush=True)

    runs: dict[str, dict] = {}
    complete = True
    for name, tiling, placement in selected:
        start = time.perf_counter()
        root = work / name / "dataset"
        tiles = build_tiled_dataset(rsscn7, scenes, tiling, val_tiles if placement == "with-val" else {}, root,
                                    args.neutral_names)
        truth = truth_pairs(tiles)
        (work / name / "truth").mkdir(parents=True, exist_ok=True)
        tiles.to_csv(work / name / "truth" / "tiles.csv", index=False)
        truth.to_csv(work / name / "truth" / "pairs.csv", index=False)
        build_seconds = time.perf_counter() - start
        splits = [s for s in ("train", "val") if (root / s).is_dir()]
        print(f"{name}: {len(tiles)} tiles, {len(truth)} true pairs ({int(truth['detectable'].sum())} detectable) "
              f"in {root} ({build_seconds:.1f} s); running Curate on {', '.join(splits)}", flush=True)
        manifest, pairs, curate = run_curate(root, work / name / "curate-out", splits)
        run = {"tiling": asdict(tiling) | {"label": tiling.label}, "placement": placement,
               "dataset": str(root), "build_seconds": round(build_seconds, 1),
               "truth": truth_summary(tiles, truth), "curate": curate, "scores": None}
        if manifest is None:
            complete = False
            print(f"{name}: not scored: {curate['skipped']}", flush=True)
        else:
            settings = recorded_settings(curate["manifest_metadata"])
            run["settings"] = settings
            truth = truth_pairs(tiles, settings["duplicate_share"], settings["min_coverage"])
            run["scores"] = score_run(manifest, pairs, tiles, truth, settings["duplicate_share"],
                                      settings["min_coverage"], tuple(settings["evaluation_splits"]))
            s = run["scores"]
            print(f"{name}: exit {curate['exit_status']}, {curate['seconds']:.1f} s; kept {_r(s['keep']['kept'])}; "
                  f"pairs recorded (detectable) {_r(s['pairs']['recall']['detectable'])}; "
                  f"kept train-val pairs {_r(s['leaks']['kept_cross_pairs']['all'])}", flush=True)
        runs[name] = run

    command = shlex.join(["python", "-m", "bench.tiling", *(sys.argv[1:] if argv is None else argv)])
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    composition = "\n".join(
        f"- `{name}`: {run['truth']['tiles']} tiles ({_counts(run['truth']['tiles_by_split'])}), tiling "
        f"{run['tiling']['label']}; true pairs: " + "; ".join(
            f"{kind} {k['pairs']} (shares {', '.join(map(str, k['shares']))}; {k['detectable']} detectable, "
            f"{k['cross_split']} train-val)" for kind, k in run["truth"]["by_kind"].items())
        for name, run in runs.items())
    curate_lines = "\n".join(
        f"- `{name}`: `{run['curate'].get('command', '')}`: exit {run['curate'].get('exit_status', 'n/a')}, "
        f"{run['curate'].get('seconds', 'n/a')} s"
        for name, run in runs.items())
    report = "\n\n".join([
        "# Curate tiled-scenes benchmark",
        f"Command: `{command}`  \nDate: {date}  \n"
        + "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, Python {python}".format(**machine()),
        "## Dataset\n\n"
        f"{len(scenes)} RSSCN7 scenes (seed {args.seed}; tiles of `bench/rsscn7_overlaps.csv` left out), cut 3 x 3; "
        f"in the with-val runs {len(val_tiles)} scenes have one or two tiles in val. Tiles are named "
        + ("by a hash (`--neutral-names`)" if args.neutral_names else "`<scene>_r<row>_c<column>`")
        + ". Truth: rectangle arithmetic (intersection area over tile area).\n\n" + composition,
        "## Scores\n\nRatios with (numerator/denominator).\n\n" + report_tables(runs),
        "## Curate runs\n\n" + curate_lines,
        "## Examples of errors\n\nAt most 20 of each kind per run (all counts are in the tables).\n\n"
        + report_lists(runs, work),
    ]) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "tiling.md").write_text(report)
    (args.results / "tiling.json").write_text(json.dumps({
        "command": command, "date": date, "machine": machine(),
        "config": {"seed": args.seed, "scenes": len(scenes), "neutral_names": args.neutral_names,
                   "val_fraction": VAL_FRACTION,
                   "save_quality": SAVE_QUALITY, "tilings": [asdict(t) for t in TILINGS], "work": str(work),
                   "rsscn7": str(rsscn7)},
        "scenes": scenes, "val_tiles": {s: [list(p) for p in v] for s, v in val_tiles.items()}, "runs": runs,
    }, indent=1, default=str))
    print(f"wrote {args.results / 'tiling.md'} and {args.results / 'tiling.json'}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
