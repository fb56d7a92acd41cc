"""Tests of the tiled-scenes benchmark's geometry, draws and scoring (no Curate run, no RSSCN7: synthetic scenes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.tiling import (
    TILINGS,
    Tiling,
    build_tiled_dataset,
    draw_scenes,
    intersection,
    place_val,
    recorded_settings,
    select_runs,
    tile_name,
    truth_pairs,
)
from bench.tiling_score import (
    drop_scores,
    keep_scores,
    leak_scores,
    pair_scores,
    reason_kind,
    score_run,
    true_relation,
)

T25, T50 = TILINGS


def _tiles(tiling: Tiling = T25, scenes: tuple[str, ...] = ("c/s1.jpg",), val: dict | None = None,
           size: int = 400) -> pd.DataFrame:
    """A tiles frame as build_tiled_dataset returns it, without writing images."""
    val = val or {}
    rows = []
    for scene in scenes:
        label = scene.split("/")[0]
        for (r, c), box in tiling.boxes(size, size).items():
            split = "val" if (r, c) in val.get(scene, []) else "train"
            rows.append({"path": f"/d/{split}/{label}/{tile_name(scene, r, c)}", "split": split, "label": label,
                         "scene": scene, "row": r, "col": c, "x0": box[0], "y0": box[1], "x1": box[2],
                         "y1": box[3]})
    return pd.DataFrame(rows)


def _path(tiles: pd.DataFrame, scene: str, r: int, c: int) -> str:
    return tiles.loc[(tiles["scene"] == scene) & (tiles["row"] == r) & (tiles["col"] == c), "path"].item()


def _pairs_from(truth: pd.DataFrame, drop: int = 0, swap: bool = False) -> pd.DataFrame:
    """pairs.parquet recording every true pair but the first ``drop``, with the true shares (a and b swapped)."""
    kept = truth.iloc[drop:]
    a, b = (kept["b"], kept["a"]) if swap else (kept["a"], kept["b"])
    sa, sb = (kept["share_b"], kept["share_a"]) if swap else (kept["share_a"], kept["share_b"])
    return pd.DataFrame({"path_a": a.to_numpy(), "path_b": b.to_numpy(), "relation": "overlap",
                         "share_a": sa.to_numpy(), "share_b": sb.to_numpy()})


def _manifest(tiles: pd.DataFrame, actions: dict[str, str] | None = None,
              leaks_into: dict[str, str] | None = None, reasons: dict[str, str] | None = None) -> pd.DataFrame:
    actions, leaks_into, reasons = actions or {}, leaks_into or {}, reasons or {}
    return pd.DataFrame({"path": tiles["path"], "split": tiles["split"],
                         "action": [actions.get(p, "keep") for p in tiles["path"]],
                         "reason": [reasons.get(p, "no issue") for p in tiles["path"]],
                         "leaks_into": pd.array([leaks_into.get(p) for p in tiles["path"]], dtype="string")})


# --- geometry and truth ------------------------------------------------------------------------------------------

def test_tilings_cover_the_scene_from_edge_to_edge() -> None:
    boxes = T25.boxes(400, 400)
    assert boxes[(0, 0)] == (0, 0, 160, 160)
    assert boxes[(1, 2)] == (240, 120, 400, 280)
    assert T50.boxes(400, 400)[(2, 2)] == (200, 200, 400, 400)
    assert T25.overlap == 0.25 and T50.overlap == 0.5
    assert T25.boxes(500, 500)[(0, 0)] == (50, 50, 210, 210)  # centred in a larger scene
    with pytest.raises(ValueError):
        T50.boxes(300, 300)


def test_intersection_of_touching_boxes_is_empty() -> None:
    assert intersection((0, 0, 200, 200), (200, 0, 400, 200)) == 0
    assert intersection((0, 0, 160, 160), (120, 120, 280, 280)) == 40 * 40


def test_truth_at_25_percent() -> None:
    truth = truth_pairs(_tiles(T25))
    side, diagonal = truth[truth["kind"] == "side"], truth[truth["kind"] == "diagonal"]
    assert len(side) == 12 and len(diagonal) == 8 and len(truth) == 20  # tiles two apart do not meet
    assert (side["share_a"] == 0.25).all() and (side["share_b"] == 0.25).all()
    assert (diagonal["share_a"] == 0.0625).all() and (diagonal["share_b"] == 0.0625).all()
    assert side["detectable"].all() and not diagonal["detectable"].any()
    assert set(truth["relation"]) == {"overlap"}


def test_truth_at_50_percent() -> None:
    truth = truth_pairs(_tiles(T50))
    assert len(truth) == 20  # tiles two apart touch along an edge: no shared area
    assert set(truth.loc[truth["kind"] == "side", "share_a"]) == {0.5}
    assert set(truth.loc[truth["kind"] == "diagonal", "share_b"]) == {0.25}
    assert truth["detectable"].all()
    assert set(truth["relation"]) == {"overlap"}


def test_truth_relation_and_pairs_stay_within_a_scene() -> None:
    dense = Tiling("dense", 100, 10)  # side neighbours share 90 %: duplicates at duplicate_share 0.75
    tiles = _tiles(dense, scenes=("c/s1.jpg", "d/s2.jpg"), size=120)
    truth = truth_pairs(tiles)
    scene = dict(zip(tiles["path"], tiles["scene"]))
    assert (truth["a"].map(scene) == truth["b"].map(scene)).all()  # no pair joins two scenes
    assert len(truth) == 2 * 36  # every pair of 9 tiles in each scene
    first = truth[(truth["kind"] == "side") & (truth["share_a"] == 0.9)]
    assert set(first["relation"]) == {"duplicate"}
    assert true_relation(0.8, 0.7) == "overlap" and true_relation(0.75, 1.0) == "duplicate"
    assert true_relation(0.8, 0.7, duplicate_share=0.7) == "duplicate"


def test_cross_split_truth() -> None:
    truth = truth_pairs(_tiles(T25, val={"c/s1.jpg": [(1, 1)]}))
    assert truth["cross_split"].sum() == 8  # the centre touches every other tile
    assert set(truth.loc[truth["cross_split"], "kind"]) == {"side", "diagonal"}


# --- draws and the written dataset ------------------------------------------------------------------------------

def _fake_rsscn7(root, classes: int = 3, per_class: int = 5, size: int = 400):
    rng = np.random.default_rng(0)
    for k in range(classes):
        for i in range(per_class):
            path = root / f"{chr(97 + k)}Class" / f"{chr(97 + k)}{i:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 255, size=(size // 16, size // 16, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(path, quality=90)
    return root


def test_draw_scenes_spreads_over_classes_and_respects_exclusions(tmp_path) -> None:
    root = _fake_rsscn7(tmp_path / "rsscn7", classes=3, per_class=5, size=32)
    scenes = draw_scenes(root, 7, seed=3, exclude={"aClass/a000.jpg"})
    assert len(scenes) == 7 and "aClass/a000.jpg" not in scenes
    counts = pd.Series([s.split("/")[0] for s in scenes]).value_counts().to_dict()
    assert counts == {"aClass": 3, "bClass": 2, "cClass": 2}
    assert scenes == draw_scenes(root, 7, seed=3, exclude={"aClass/a000.jpg"})
    assert scenes != draw_scenes(root, 7, seed=4, exclude={"aClass/a000.jpg"})


@pytest.mark.parametrize("seed", range(20))
def test_val_placement_keeps_every_class_in_val(seed: int) -> None:
    scenes = [f"{label}/{label[0]}{i:03d}.jpg" for label in ("aGrass", "bField", "cIndustry", "dRiverLake",
                                                             "eForest", "fResident", "gParking") for i in range(6)]
    chosen = place_val(scenes, seed)
    assert {scene.split("/")[0] for scene in chosen} == {scene.split("/")[0] for scene in scenes}
    assert len(chosen) == 14  # a third of 6 scenes in each of 7 classes
    assert all(1 <= len(tiles) <= 2 and len(set(tiles)) == len(tiles) for tiles in chosen.values())
    assert all(0 <= r < 3 and 0 <= c < 3 for tiles in chosen.values() for r, c in tiles)
    assert chosen == place_val(scenes, seed)


def test_val_placement_gives_a_lone_scene_val_tiles() -> None:
    assert set(place_val(["a/x.jpg", "b/y.jpg", "b/z.jpg"], 0)) >= {"a/x.jpg"}


def test_build_writes_named_tiles_of_the_right_size(tmp_path) -> None:
    rsscn7 = _fake_rsscn7(tmp_path / "rsscn7", classes=2, per_class=1)
    scenes = ["aClass/a000.jpg", "bClass/b000.jpg"]
    tiles = build_tiled_dataset(rsscn7, scenes, T25, {"bClass/b000.jpg": [(0, 2)]}, tmp_path / "ds")
    assert len(tiles) == 18
    assert (tmp_path / "ds" / "train" / "aClass" / "a000_r1_c2.jpg").is_file()
    assert (tmp_path / "ds" / "val" / "bClass" / "b000_r0_c2.jpg").is_file()
    assert tiles["split"].value_counts().to_dict() == {"train": 17, "val": 1}
    with Image.open(tiles["path"].iloc[0]) as image:
        assert image.size == (160, 160) and image.format == "JPEG"
    source = np.asarray(Image.open(rsscn7 / "aClass" / "a000.jpg").convert("RGB"), dtype=float)
    tile = np.asarray(Image.open(tmp_path / "ds" / "train" / "aClass" / "a000_r1_c2.jpg"), dtype=float)
    assert np.abs(tile - source[120:280, 240:400]).mean() < 6  # the crop at its box, up to JPEG error


def test_select_runs() -> None:
    assert [n for n, _, _ in select_runs(None)] == ["25-one-split", "25-with-val", "50-one-split", "50-with-val"]
    assert [n for n, _, _ in select_runs(["25-one-split"])] == ["25-one-split"]
    assert [n for n, _, _ in select_runs(["with-val"])] == ["25-with-val", "50-with-val"]
    assert [n for n, _, _ in select_runs(["50"])] == ["50-one-split", "50-with-val"]
    with pytest.raises(ValueError):
        select_runs(["75"])


def test_recorded_settings_fall_back_to_defaults() -> None:
    meta = {"curate": {"config": {"decisions": {"duplicate_share": 0.6, "evaluation_splits": ["val"]}}}}
    settings = recorded_settings(meta)
    assert settings["duplicate_share"] == 0.6 and settings["duplicate_share_from"] == "recorded"
    assert settings["min_coverage"] == 0.1 and settings["min_coverage_from"] == "default"
    assert settings["evaluation_splits"] == ["val"]
    assert recorded_settings({})["duplicate_share"] == 0.75


# --- scoring ------------------------------------------------------------------------------------------------------

def test_all_pairs_found_and_kept() -> None:
    tiles = _tiles(T25)
    truth = truth_pairs(tiles)
    scores = score_run(_manifest(tiles), _pairs_from(truth), tiles, truth)
    assert scores["keep"]["kept"] == {"num": 9, "den": 9, "ratio": 1.0}
    pairs = scores["pairs"]
    assert pairs["recall"]["all"]["ratio"] == 1.0 and pairs["recall"]["detectable"]["den"] == 12
    assert pairs["precision"]["ratio"] == 1.0 and pairs["share_mae"] == 0.0
    assert pairs["relation_confusion"] == {"overlap": {"overlap": 20}}
    assert scores["leaks"]["kept_cross_pairs"]["all"]["den"] == 0
    assert scores["drops"]["not_kept"] == 0


def test_missed_pair_lowers_recall() -> None:
    tiles = _tiles(T25)
    truth = truth_pairs(tiles)
    first_kind = truth["kind"].iloc[0]
    pairs = pair_scores(_pairs_from(truth, drop=1), truth, tiles)
    assert pairs["recall"]["all"] == {"num": 19, "den": 20, "ratio": 19 / 20}
    assert pairs["recall_by_kind"][first_kind]["all"]["num"] == (truth["kind"] == first_kind).sum() - 1
    assert pairs["relation_confusion"]["overlap"] == {"none": 1, "overlap": 19}
    assert len(pairs["missed_detectable"]) == int(truth["detectable"].iloc[0])


def test_diagonal_pairs_count_only_in_recall_over_all() -> None:
    tiles = _tiles(T25)
    truth = truth_pairs(tiles)
    pairs = pair_scores(_pairs_from(truth[truth["kind"] == "side"]), truth, tiles)
    assert pairs["recall"]["detectable"]["ratio"] == 1.0
    assert pairs["recall"]["all"] == {"num": 12, "den": 20, "ratio": 0.6}
    assert pairs["recall_by_kind"]["diagonal"]["all"]["ratio"] == 0.0
    assert pairs["recall_by_kind"]["diagonal"]["detectable"]["ratio"] is None


def test_false_pairs_cost_precision_and_say_why() -> None:
    tiles = _tiles(T25, scenes=("c/s1.jpg", "c/s2.jpg"))
    truth = truth_pairs(tiles)
    extra = pd.DataFrame({
        "path_a": [_path(tiles, "c/s1.jpg", 0, 0), _path(tiles, "c/s1.jpg", 0, 0)],
        "path_b": [_path(tiles, "c/s2.jpg", 0, 0), _path(tiles, "c/s1.jpg", 0, 2)],
        "relation": ["duplicate", "overlap"], "share_a": [0.9, 0.1], "share_b": [0.9, 0.1]})
    pairs = pair_scores(pd.concat([_pairs_from(truth), extra]), truth, tiles)
    assert pairs["precision"] == {"num": 40, "den": 42, "ratio": 40 / 42}
    assert pairs["false_pairs_by_why"] == {"different scenes": 1, "same scene, no shared ground": 1}
    assert pairs["relation_confusion"]["none"] == {"duplicate": 1, "overlap": 1}


def test_pairs_are_unordered_and_shares_follow_the_order() -> None:
    tiles = _tiles(T50)
    truth = truth_pairs(tiles)
    recorded = _pairs_from(truth, swap=True)
    recorded["share_a"] = recorded["share_a"] + 0.1  # b's share (in truth's order) off by 0.1
    pairs = pair_scores(recorded, truth, tiles)
    assert pairs["recall"]["all"]["ratio"] == 1.0
    assert pairs["share_mae"] == pytest.approx(0.05) and pairs["share_max_error"] == pytest.approx(0.1)
    assert pairs["shares_off"]["count"] == 20  # every pair is 0.1 off on one side
    assert pair_scores(_pairs_from(truth, swap=True), truth, tiles)["shares_off"]["count"] == 0


def test_kept_train_tile_sharing_ground_with_kept_val_tile_is_a_leak() -> None:
    tiles = _tiles(T25, val={"c/s1.jpg": [(0, 0)]})
    truth = truth_pairs(tiles)  # r0c0 (val) meets r0c1, r1c0 (side) and r1c1 (diagonal)
    side = _path(tiles, "c/s1.jpg", 0, 1)
    leaks = leak_scores(_manifest(tiles, actions={_path(tiles, "c/s1.jpg", 1, 0): "drop"},
                                  leaks_into={_path(tiles, "c/s1.jpg", 1, 0): _path(tiles, "c/s1.jpg", 0, 0)}),
                        tiles, truth)
    assert leaks["kept_cross_pairs"]["all"] == {"num": 2, "den": 3, "ratio": 2 / 3}
    assert leaks["kept_cross_pairs"]["detectable"] == {"num": 1, "den": 2, "ratio": 0.5}
    assert {k["train"] for k in leaks["kept_cross_pair_list"]} == {side, _path(tiles, "c/s1.jpg", 1, 1)}
    assert leaks["removed"]["detectable"] == {"num": 1, "den": 2, "ratio": 0.5}
    assert leaks["leak_drops"] == 1 and leaks["false_leaks"]["count"] == 0 and leaks["wrong_target"]["count"] == 0


def test_dropped_val_tile_means_no_leak() -> None:
    tiles = _tiles(T25, val={"c/s1.jpg": [(0, 0)]})
    truth = truth_pairs(tiles)
    leaks = leak_scores(_manifest(tiles, actions={_path(tiles, "c/s1.jpg", 0, 0): "drop"}), tiles, truth)
    assert leaks["kept_cross_pairs"]["all"]["num"] == 0
    assert leaks["removed"]["all"]["den"] == 0


def test_dropped_train_tile_without_shared_ground_is_a_false_leak() -> None:
    tiles = _tiles(T25, val={"c/s1.jpg": [(0, 0)]})
    truth = truth_pairs(tiles)
    far = _path(tiles, "c/s1.jpg", 2, 2)
    manifest = _manifest(tiles, actions={far: "drop"}, leaks_into={far: _path(tiles, "c/s1.jpg", 0, 0)},
                         reasons={far: f"leaks into {_path(tiles, 'c/s1.jpg', 0, 0)}"})
    leaks = leak_scores(manifest, tiles, truth)
    assert leaks["false_leaks"]["count"] == 1 and leaks["false_leaks"]["list"][0]["path"] == far
    assert leaks["wrong_target"]["count"] == 1
    keep = keep_scores(manifest, tiles, truth)
    assert keep["kept"]["num"] == 8
    assert keep["kept_of_should_keep"] == {"num": 5, "den": 6, "ratio": 5 / 6}  # r0c1, r1c0, r1c1 should go
    assert drop_scores(manifest)["by_reason"] == {"leaks into <file>": 1}


def test_leak_scores_without_leaks_into_column() -> None:
    tiles = _tiles(T25, val={"c/s1.jpg": [(1, 1)]})
    truth = truth_pairs(tiles)
    leaks = leak_scores(_manifest(tiles).drop(columns="leaks_into"), tiles, truth)
    assert leaks["leak_flagged"] is None
    assert leaks["kept_cross_pairs"]["all"] == {"num": 8, "den": 8, "ratio": 1.0}


def test_score_run_without_pairs_file() -> None:
    tiles = _tiles(T25)
    assert score_run(_manifest(tiles), None, tiles, truth_pairs(tiles))["pairs"] is None


def test_reason_kind_hides_paths_and_numbers() -> None:
    assert reason_kind("duplicate of /tmp/x/train/a/b_r0_c1.jpg") == "duplicate of <file>"
    assert reason_kind("kept copy of duplicate group 17") == "kept copy of duplicate group <n>"
    assert reason_kind("drop: blurry, dark") == "drop: blurry, dark"
