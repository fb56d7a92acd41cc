"""Tests of candidate selection (`tasks.verify.candidates`): which pairs are worth verifying."""

import io
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from tasks.config import VerificationConfig
from tasks.imagestats import PART_WINDOWS
from tasks.schema import Col
from tasks.verify import grid_neighbours, name_neighbours, part_neighbours, select_candidates
from tests.conftest import RSSCN7, SIZE, textured_scene


def test_each_images_nearest_neighbours_are_verified_whatever_their_similarity() -> None:
    """Below both similarity floors, a pair is still a candidate when it is an image's nearest by either measure."""
    from tasks.imagestats import SIGNATURE
    from tasks.similarity import PAIR_A, PAIR_B, SIMILARITY

    signatures = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 1, 0], [0, 0, 0.6, 0.8]], np.float32)
    files = pd.DataFrame({Col.ROW: [0, 1, 2, 3], SIGNATURE: list(signatures)})
    pairs = pd.DataFrame({PAIR_A: [0], PAIR_B: [2], SIMILARITY: [0.5]})  # the embedding's only (weak) neighbours

    def chosen(always: int) -> list[tuple[int, int]]:
        config = VerificationConfig(candidates_always=always, candidates_by_part=0, candidates_by_name=0,
                                      candidates_by_structure=0)
        candidates = select_candidates(files, pairs, config)
        return list(zip(candidates[PAIR_A], candidates[PAIR_B]))

    assert chosen(1) == [(0, 1), (0, 2), (2, 3)]  # colour cosine 0.6 and similarity 0.5, but nearest
    assert chosen(0) == []


def test_a_zoom_has_the_colours_of_one_part_of_its_original(scene: np.ndarray) -> None:
    """A 2x zoom into one corner of a tile whose corners differ in colour: its colours are far from the whole
    tile's but close to one part's, which is what `part_neighbours` searches."""
    from tasks.imagestats import colour_signatures

    half = SIZE // 2
    tile = scene.copy()
    for (top, left), tint in zip([(0, 0), (0, half), (half, 0), (half, half)],
                                 [(40, 160, 60), (170, 90, 30), (60, 60, 190), (150, 150, 150)], strict=True):
        region = tile[top : top + half, left : left + half].astype(np.float32)
        tile[top : top + half, left : left + half] = np.clip(region * 0.5 + np.array(tint) * 0.5, 0, 255)
    zoom = cv2.resize(tile[8 : 8 + half, 12 : 12 + half], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    whole, parts = colour_signatures(Image.fromarray(tile))
    zoom_whole, _ = colour_signatures(Image.fromarray(zoom))

    assert parts.dtype == np.uint8 and parts.shape == (PART_WINDOWS * len(whole),)
    best_part = float((parts.reshape(PART_WINDOWS, -1) / 255.0 @ zoom_whole).max())
    assert best_part > 0.9
    assert float(whole @ zoom_whole) < best_part - 0.2


def test_grey_zooms_are_proposed_by_their_parts() -> None:
    """Panchromatic imagery: RSSCN7's grass and river tiles in grey, whose listed natural 2x zooms the part search
    must propose among 400 tiles of similar ground. Grey pixels are counted by value alone at 64 levels; with the
    eight levels of value that colour pixels get, 25 of these 48 zooms were proposed (now 41)."""
    from tasks.imagestats import colour_signatures

    overlaps = pd.read_csv(Path(__file__).resolve().parents[1] / "bench" / "rsscn7_overlaps.csv", comment="#")
    tiles = sorted(RSSCN7.glob("aGrass/*.jpg")) + sorted(RSSCN7.glob("dRiverLake/*.jpg"))
    index = {f"{tile.parent.name}/{tile.name}": position for position, tile in enumerate(tiles)}
    signatures = [colour_signatures(Image.open(tile).convert("L")) for tile in tiles]

    found = part_neighbours(np.stack([whole for whole, _ in signatures]),
                                   np.stack([parts for _, parts in signatures]), np.arange(len(tiles)), 2)

    proposed = set(zip(found["row_a"], found["row_b"]))
    zooms = overlaps[(overlaps["kind"] == "zoom2x") & overlaps["a"].isin(index) & overlaps["b"].isin(index)]
    hits = [tuple(sorted((index[a], index[b]))) in proposed for a, b in zip(zooms["a"], zooms["b"], strict=True)]
    assert len(hits) == 48 and sum(hits) >= 36


def test_part_neighbours_match_a_brute_force_search() -> None:
    """The blocked search returns, for every row, the k rows whose best part is nearest its whole signature."""
    rng = np.random.default_rng(11)
    n, k, dims = 17, 3, 8
    signatures = rng.random((n, dims), dtype=np.float32)
    signatures /= np.linalg.norm(signatures, axis=1, keepdims=True)
    parts = rng.integers(0, 256, size=(n, PART_WINDOWS * dims), dtype=np.uint8)
    rows = np.arange(100, 100 + n)

    found = part_neighbours(signatures, parts, rows, k)

    scores = (signatures @ (parts.reshape(-1, dims).astype(np.float32) / 255.0).T).reshape(n, n, -1).max(axis=2)
    np.fill_diagonal(scores, -np.inf)
    expected = {}
    for query in range(n):
        for rank, other in enumerate(np.argsort(-scores[query])[:k]):
            pair = (min(rows[query], rows[other]), max(rows[query], rows[other]), rank)
            expected[pair] = float(scores[query, other])
    got = {(a, b, r): s for a, b, r, s in zip(found["row_a"], found["row_b"], found["rank"], found["similarity"])}
    assert got.keys() == expected.keys()
    assert np.allclose([got[key] for key in expected], list(expected.values()), atol=1e-5)


def test_name_neighbours_follow_natural_order_across_folders() -> None:
    paths = pd.Series(["/d/train/a/tile_10.jpg", "/d/val/b/tile_9.jpg", "/d/unlabeled/tile_11.png", "/d/x/other.jpg"])

    pairs = name_neighbours(paths, np.array([0, 1, 2, 3]), k=1)

    assert sorted(zip(pairs["row_a"], pairs["row_b"])) == [(0, 1), (0, 2), (1, 3)]  # other, 9, 10, 11
    assert len(name_neighbours(paths, np.array([0, 1, 2, 3]), k=2)) == 5


def test_grid_neighbours_pair_tiles_next_to_each_other_on_either_axis() -> None:
    """Tiles named by row and column, or by pixel offsets, in any folders: each is paired with the next along each
    axis (the tile below is three files further in natural order here); names with one number are left alone."""
    cells = [(row, column) for row in range(3) for column in range(3)]
    paths = pd.Series([f"/d/{'val' if cell == (1, 1) else 'train'}/scene_r{cell[0]}_c{cell[1]}.jpg" for cell in cells]
                      + [f"/d/train/offsets_{256 * x}_{256 * y}.png" for x, y in ((0, 0), (1, 0), (0, 1))]
                      + ["/d/train/tile_1.jpg", "/d/train/tile_2.jpg"])
    sources, targets = grid_neighbours(paths, np.arange(len(paths)))

    found = {frozenset((paths[a], paths[b])) for a, b in zip(sources, targets)}
    expected = {frozenset((f"scene_r{r}_c{c}", f"scene_r{r + dr}_c{c + dc}")) for r, c in cells
                for dr, dc in ((0, 1), (1, 0)) if r + dr < 3 and c + dc < 3}
    expected |= {frozenset(("offsets_0_0", "offsets_256_0")), frozenset(("offsets_0_0", "offsets_0_256"))}
    assert {frozenset(Path(path).stem for path in pair) for pair in found} == expected


def test_part_and_name_neighbours_are_verified_whatever_their_similarity() -> None:
    from tasks.imagestats import PART_SIGNATURES, SIGNATURE
    from tasks.similarity import PAIR_A, PAIR_B, empty_pairs

    signatures = np.eye(4, dtype=np.float32)  # no two images share a colour
    parts = np.zeros((4, PART_WINDOWS, 4), np.uint8)
    parts[2, 5] = [255, 0, 0, 0]  # one part of image 2 has image 0's colours
    files = pd.DataFrame({Col.ROW: [0, 1, 2, 3], Col.PATH: ["/a/9.jpg", "/a/z.jpg", "/b/1.jpg", "/a/10.jpg"],
                          SIGNATURE: list(signatures), PART_SIGNATURES: list(parts.reshape(4, -1))})
    no_neighbours = dict(candidates_always=0, candidate_colour_similarity=1.0, candidate_similarity=1.0,
                         candidates_by_structure=0)

    def chosen(by_part: int, by_name: int) -> set[tuple[int, int]]:
        config = VerificationConfig(candidates_by_part=by_part, candidates_by_name=by_name, **no_neighbours)
        candidates = select_candidates(files, empty_pairs(), config)
        return set(zip(candidates[PAIR_A], candidates[PAIR_B]))

    assert chosen(0, 0) == set()
    assert (0, 2) in chosen(1, 0)
    assert chosen(0, 1) == {(0, 2), (0, 3), (1, 3)}  # 1.jpg, 9.jpg, 10.jpg, z.jpg


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer)


def test_structure_signature_survives_changes_of_colour_and_quality(scene: np.ndarray) -> None:
    """Grey, re-coloured, re-exposed, noisy, shrunk and heavily re-compressed copies keep the original's
    structure signature; another scene does not share it."""
    from tasks.imagestats import structure_signature

    original = Image.fromarray(scene)
    pixels = scene.astype(np.float32)
    copies = {
        "grey": original.convert("L"),
        "channels swapped": Image.fromarray(scene[:, :, ::-1].copy()),
        "gamma and contrast": Image.fromarray(np.clip(255 * (pixels / 255) ** 0.6 * 0.7 + 30, 0, 255).astype(np.uint8)),
        "noise": Image.fromarray(np.clip(pixels + np.random.default_rng(2).normal(0, 15, scene.shape), 0, 255)
                                 .astype(np.uint8)),
        "quarter size": original.resize((SIZE // 4, SIZE // 4), Image.Resampling.LANCZOS),
        "JPEG quality 10": _jpeg(original, 10),
    }

    signature = structure_signature(original)

    assert signature.dtype == np.int8 and signature.shape == (64,)
    unit = signature / 127.0
    for name, copy in copies.items():
        assert float(unit @ (structure_signature(copy) / 127.0)) > 0.95, name
    assert abs(float(unit @ (structure_signature(Image.fromarray(textured_scene(seed=9))) / 127.0))) < 0.5
    assert not structure_signature(Image.new("RGB", (50, 50), (90, 120, 30))).any()  # a flat image: no structure


def test_dihedral_variants_are_the_signatures_of_the_flips_and_quarter_turns(scene: np.ndarray) -> None:
    from tasks.imagestats import DIHEDRAL_VARIANTS, dihedral_variants, structure_signature

    original = Image.fromarray(scene)
    variants = dihedral_variants(structure_signature(original)[None, :]) / 127.0
    assert variants.shape == (DIHEDRAL_VARIANTS, 64)
    best = []
    for turn in [None, *Image.Transpose]:
        turned = original if turn is None else original.transpose(turn)
        similarities = variants @ (structure_signature(turned) / 127.0)
        assert similarities.max() > 0.99, turn
        best.append(int(similarities.argmax()))
    assert best[0] == 0
    assert sorted(best) == list(range(DIHEDRAL_VARIANTS))  # each flip or turn is exactly one variant


def test_structure_neighbours_are_verified_when_similar_enough() -> None:
    """A copy whose colours changed has nothing in common with its original by colour signature; its structure
    (here mirrored and a little changed) makes it a candidate, above the floor only."""
    from tasks.imagestats import PART_SIGNATURES, SIGNATURE, STRUCTURE, dihedral_variants
    from tasks.similarity import PAIR_A, PAIR_B, empty_pairs

    rng = np.random.default_rng(4)
    structures = rng.normal(size=(4, 64))
    structures[1] = dihedral_variants(structures[0][None, :])[2] + rng.normal(0, 0.2, 64)
    structures = np.round(structures / np.linalg.norm(structures, axis=1, keepdims=True) * 127).astype(np.int8)
    cosine = float(dihedral_variants(structures[0][None, :])[2].astype(float) @ structures[1]) / 127**2
    files = pd.DataFrame({Col.ROW: [0, 1, 2, 3], Col.PATH: ["/a/x.jpg", "/b/y.jpg", "/c/z.jpg", "/d/w.jpg"],
                          SIGNATURE: list(np.eye(4, dtype=np.float32)), STRUCTURE: list(structures),
                          PART_SIGNATURES: list(np.zeros((4, PART_WINDOWS * 4), np.uint8))})

    def chosen(by_structure: int, floor: float) -> set[tuple[int, int]]:
        config = VerificationConfig(candidates_always=0, candidate_colour_similarity=1.0, candidate_similarity=1.0,
                                      candidates_by_part=0, candidates_by_name=0,
                                      candidates_by_structure=by_structure, candidate_structure_similarity=floor)
        candidates = select_candidates(files, empty_pairs(), config)
        return set(zip(candidates[PAIR_A], candidates[PAIR_B]))

    assert 0.9 < cosine < 0.99
    assert chosen(1, 0.9) == {(0, 1)}
    assert chosen(1, 0.99) == set()
    assert chosen(0, 0.9) == set()


