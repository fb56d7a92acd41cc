"""Tests never write into the repository: conftest lists the repository before the session and after it, and fails
the session naming every path that appeared, changed or vanished, outside what a test run is expected to write."""

from tests.conftest import EXPECTED_WRITES, REPO, repository_changes, repository_files


def test_new_changed_and_removed_paths_are_named_and_expected_writes_are_not(tmp_path):
    for name in ("kept.txt", "edited.txt", "gone.txt", "tasks/stage.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a")
    before = repository_files(tmp_path)

    (tmp_path / "edited.txt").write_text("a longer text")
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "data" / "cache").mkdir(parents=True)
    (tmp_path / "data" / "cache" / "content.parquet").write_bytes(b"PAR1")
    for name in EXPECTED_WRITES:  # at the top and further down
        for folder in (tmp_path / name, tmp_path / "tasks" / name):
            folder.mkdir()
            (folder / "anything").write_text("a")

    assert repository_changes(before, repository_files(tmp_path)) == [
        "new: data/", "new: data/cache/", "new: data/cache/content.parquet", "changed: edited.txt", "removed: gone.txt",
    ]


def test_the_repository_listing_holds_the_sources_and_none_of_the_expected_writes():
    listing = repository_files(REPO)
    assert {"tests/conftest.py", "tasks/config.py", "configs/default.yaml"} <= set(listing)
    assert not [path for path in listing if set(path.rstrip("/").split("/")) & EXPECTED_WRITES]
