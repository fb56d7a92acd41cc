"""Tests for the synthetic demo dataset (tasks/demo.py): ground truth, determinism, idempotence."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tasks import demo
from tasks.demo import DEMO_KINDS, MARKER_NAME, DemoFile, build_demo_dataset

SMALL = demo.MIN_TILES_PER_CLASS


@pytest.fixture(scope="module")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoFile]]:
    """The default dataset, built once for the module because it is the slowest step."""
    root = tmp_path_factory.mktemp("demo")
    return root, build_demo_dataset(root)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoFile]]:
    """A small reference build (seed 0) that tests compare against or copy; never modified."""
    root = tmp_path_factory.mktemp("demo_small")
    return root, build_demo_dataset(root, tiles_per_class=SMALL)


def _copy_of(root: Path, tmp_path: Path) -> Path:
    """A private copy of a built dataset, for tests that modify it."""
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root (marker included), keyed by its path relative to root."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _decodes(path: Path) -> bool:
    """True if Pillow can fully decode the file."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def test_every_kind_and_split_is_present(default_build: tuple[Path, list[DemoFile]]) -> None:
    _, files = default_build
    kinds = Counter(demo_file.kind for demo_file in files)
    assert set(kinds) == set(DEMO_KINDS)
    assert all(kinds[kind] >= 2 for kind in DEMO_KINDS)
    assert 100 <= len(files) <= 150
    assert {demo_file.split for demo_file in files} == set(demo.DEMO_SPLITS)


def test_near_copies_and_overlaps_are_all_present(default_build: tuple[Path, list[DemoFile]]) -> None:
    _, files = default_build
    assert {demo_file.kind for demo_file in files} >= {*demo.NEAR_COPY_KINDS, *demo.OVERLAP_KINDS}


def test_descriptions_match_the_files_on_disk(default_build: tuple[Path, list[DemoFile]]) -> None:
    root, files = default_build
    described = {demo_file.path for demo_file in files}
    written = {path for path in root.rglob("*") if path.is_file() and path.name != MARKER_NAME}
    assert described == written
    assert len(described) == len(files)
    for demo_file in files:
        assert demo_file.path.is_absolute()
        assert demo_file.kind in DEMO_KINDS
        if demo_file.split == "unlabeled":
            assert demo_file.label is None and demo_file.path.parent == root / "unlabeled"
        else:
            assert demo_file.path.parent == root / demo_file.split / demo_file.label


def test_copies_point_at_present_originals(default_build: tuple[Path, list[DemoFile]]) -> None:
    _, files = default_build
    by_path = {demo_file.path: demo_file for demo_file in files}
    copy_kinds = ("exact_copy", *demo.NEAR_COPY_KINDS, *demo.OVERLAP_KINDS)
    for demo_file in files:
        if demo_file.kind in copy_kinds:
            assert by_path[demo_file.source].kind == "clean"
        else:
            assert demo_file.source is None
        if demo_file.kind == "exact_copy":
            assert demo_file.path.read_bytes() == demo_file.source.read_bytes()
    exact = [demo_file for demo_file in files if demo_file.kind == "exact_copy"]
    assert any(by_path[copy.source].split != copy.split for copy in exact), "no split leak"
    assert any(
        copy.label is not None and by_path[copy.source].label not in (None, copy.label) for copy in exact
    ), "no label conflict"


def test_quality_images_are_not_copies_of_present_files(default_build: tuple[Path, list[DemoFile]]) -> None:
    _, files = default_build
    clean_bytes = {demo_file.path.read_bytes() for demo_file in files if demo_file.kind == "clean"}
    for demo_file in files:
        if demo_file.kind in demo.QUALITY_KINDS:
            assert demo_file.path.read_bytes() not in clean_bytes


def test_only_corrupt_files_fail_to_decode(default_build: tuple[Path, list[DemoFile]]) -> None:
    _, files = default_build
    for demo_file in files:
        assert _decodes(demo_file.path) == (demo_file.kind != "corrupt"), demo_file


def test_same_seed_gives_identical_bytes(small_build: tuple[Path, list[DemoFile]], tmp_path: Path) -> None:
    reference_root, reference_files = small_build
    files = build_demo_dataset(tmp_path, tiles_per_class=SMALL)
    assert [f.path.relative_to(tmp_path) for f in files] == [f.path.relative_to(reference_root) for f in reference_files]
    assert _file_bytes(tmp_path) == _file_bytes(reference_root)


def test_other_parameters_replace_the_previous_build(small_build: tuple[Path, list[DemoFile]], tmp_path: Path) -> None:
    reference_root, _ = small_build
    build_demo_dataset(tmp_path, tiles_per_class=SMALL, seed=1)
    assert _file_bytes(tmp_path) != _file_bytes(reference_root)
    build_demo_dataset(tmp_path, tiles_per_class=SMALL)
    assert _file_bytes(tmp_path) == _file_bytes(reference_root)


def test_complete_build_is_reused_without_rewriting(
    small_build: tuple[Path, list[DemoFile]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_of(small_build[0], tmp_path)
    modified = {path: path.stat().st_mtime_ns for path in root.rglob("*")}

    def fail_to_draw(*_: object) -> None:
        raise AssertionError("a complete dataset was redrawn")

    monkeypatch.setattr(demo, "_encode_jpeg", fail_to_draw)
    files = build_demo_dataset(root, tiles_per_class=SMALL)
    assert [f.path.relative_to(root) for f in files] == [f.path.relative_to(small_build[0]) for f in small_build[1]]
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*")} == modified


def test_interrupted_build_does_not_look_complete(
    small_build: tuple[Path, list[DemoFile]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_of(small_build[0], tmp_path)

    def crash_midway(*_: object) -> bytes:
        raise KeyboardInterrupt

    # Copies are written after the clean tiles, so the crash leaves a half-written folder behind.
    monkeypatch.setattr(demo, "_derive", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        build_demo_dataset(root, tiles_per_class=SMALL, seed=1)
    assert not (root / MARKER_NAME).exists()

    monkeypatch.undo()
    build_demo_dataset(root, tiles_per_class=SMALL)
    assert _file_bytes(root) == _file_bytes(small_build[0])


def test_missing_file_triggers_a_rebuild(small_build: tuple[Path, list[DemoFile]], tmp_path: Path) -> None:
    root = _copy_of(small_build[0], tmp_path)
    missing = root / small_build[1][0].path.relative_to(small_build[0])
    missing.unlink()
    build_demo_dataset(root, tiles_per_class=SMALL)
    assert _file_bytes(root) == _file_bytes(small_build[0])


def test_refuses_a_folder_with_foreign_content(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError):
        build_demo_dataset(tmp_path, tiles_per_class=SMALL)
    assert (tmp_path / "precious.txt").exists()


def test_rejects_too_few_tiles(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_demo_dataset(tmp_path, tiles_per_class=SMALL - 1)
