import os
from pathlib import Path

import pandas as pd
import pytest

from tasks.chunks import run_here
from tasks.errors import DatasetError
from tasks.ingest import find_files, ingest
from tasks.schema import Col

EXTENSIONS = (".jpg", ".png")


def test_labels_from_subfolders_and_bad_files_are_rows(tmp_path, texture):
    good = texture(tmp_path / "train" / "cat" / "a.jpg", seed=1)
    texture(tmp_path / "train" / "b.jpg", seed=2)  # directly in the split folder: unlabeled
    (tmp_path / "train" / "cat" / "empty.jpg").write_bytes(b"")
    (tmp_path / "train" / "cat" / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (tmp_path / "train" / "cat" / "text.jpg").write_text("not an image")
    (tmp_path / "train" / "notes.txt").write_text("ignored, but counted")
    (tmp_path / "train" / ".hidden.jpg").write_bytes(good.read_bytes())

    inventory = find_files({"train": tmp_path / "train"}, EXTENSIONS)
    assert [path.name for path in inventory.ignored] == ["notes.txt"]
    frame = ingest(inventory).set_index(Col.PATH)
    names = {Path(path).name: row for path, row in frame.iterrows()}
    assert set(names) == {"a.jpg", "b.jpg", "empty.jpg", "truncated.jpg", "text.jpg"}
    assert names["a.jpg"][Col.LABEL] == "cat" and names["a.jpg"][Col.VALID]
    assert (names["a.jpg"][Col.WIDTH], names["a.jpg"][Col.HEIGHT]) == (96, 96)
    assert len(names["a.jpg"][Col.SHA256]) == 64
    assert names["b.jpg"][Col.LABEL] is None or str(names["b.jpg"][Col.LABEL]) == "<NA>"
    assert names["empty.jpg"][Col.ERROR] == "empty file (0 bytes)"
    assert "decode" in names["truncated.jpg"][Col.ERROR]
    assert "not an image" in names["text.jpg"][Col.ERROR]
    for name in ("empty.jpg", "truncated.jpg", "text.jpg"):
        assert not names[name][Col.VALID]


def test_missing_split_or_no_images_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        find_files({"train": tmp_path / "missing"}, EXTENSIONS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        find_files({"train": tmp_path / "empty"}, EXTENSIONS)


def test_awkward_names_links_and_folders(tmp_path, texture):
    texture(tmp_path / "train" / "c" / "a <b>&é.jpg", seed=1)
    bad_name = os.fsencode(tmp_path / "train" / "c") + b"/bad\xff.jpg"
    Path(os.fsdecode(bad_name)).write_bytes((tmp_path / "train" / "c" / "a <b>&é.jpg").read_bytes())
    (tmp_path / "train" / "c" / "loop").symlink_to(tmp_path / "train")  # a link loop: not followed
    (tmp_path / "train" / "c" / "folder.jpg").mkdir()  # a folder with an image suffix: not a file
    frame = ingest(find_files({"train": tmp_path / "train"}, EXTENSIONS)).set_index(Col.PATH)
    assert sorted(Path(path).name for path in frame.index) == ["a <b>&é.jpg", "bad\\xff.jpg"]
    bad = frame.loc[str(tmp_path / "train" / "c" / "bad\\xff.jpg")]
    assert not bad[Col.VALID] and "not valid UTF-8" in bad[Col.ERROR]
    assert frame.loc[str(tmp_path / "train" / "c" / "a <b>&é.jpg"), Col.VALID]


def test_chunks_run_side_by_side_share_the_cores(tmp_path, texture):
    for seed in range(12):
        texture(tmp_path / "data" / f"{seed}.jpg", seed=seed)
    inventory = find_files({"train": tmp_path / "data"}, (".jpg",))
    handed = []

    def recording(name, function, chunks, **shared):
        handed.append((name, [len(chunk) for chunk in chunks], shared["threads"]))
        return run_here(name, function, chunks, **shared)

    alone = ingest(inventory, run_chunks=recording, chunk_size=5)
    side_by_side = ingest(inventory, run_chunks=recording, chunk_size=5, concurrent_chunks=2)

    cores = os.cpu_count()
    # Chunks of about equal size (not 5, 5 and 2), and two at a time: four that finish in pairs, on the cores'
    # threads shared between them.
    assert handed == [("hash", [4, 4, 4], cores), ("decode", [4, 4, 4], cores),
                      ("hash", [3, 3, 3, 3], max(1, cores // 2)), ("decode", [3, 3, 3, 3], max(1, cores // 2))]
    pd.testing.assert_frame_equal(side_by_side, alone)
