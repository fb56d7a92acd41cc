"""Export: the kept files of a curated output as split folders, sources untouched. The output is conftest's
`written_output` (the stage functions' own writing, without a flow run), and once a real run's."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.export import main
from tasks.errors import OutputError
from tasks.export import export_names, export_splits
from tasks.schema import Col


def source_state(paths) -> dict[str, tuple[bytes, int]]:
    return {path: (Path(path).read_bytes(), os.stat(path).st_mtime_ns) for path in paths}


@pytest.mark.parametrize("mode", ["hardlink", "symlink", "copy"])
def test_each_kept_file_lands_in_its_split_and_label_folder_and_sources_stay_as_they_were(
    written_output, tmp_path, mode
):
    out, manifest = written_output
    assert_exported(out, manifest, tmp_path / "export", mode)


@pytest.mark.slow
def test_a_real_runs_kept_files_are_exported(curated, tmp_path):
    _, out, manifest, _ = curated
    assert_exported(out, manifest, tmp_path / "export", "hardlink")


def assert_exported(out: Path, manifest: pd.DataFrame, dest: Path, mode: str) -> None:
    kept = manifest[manifest[Col.ACTION] == "keep"]
    assert len(kept) and kept[Col.LABEL].isna().any() and kept[Col.LABEL].notna().any()
    before = source_state(kept[Col.PATH])

    exported = export_splits(out, dest, mode)

    assert exported.files == kept[Col.CURATED_SPLIT].value_counts().sort_index().to_dict()
    written = sorted(str(path.relative_to(dest)) for path in dest.rglob("*") if path.is_file() or path.is_symlink())
    expected = sorted(f"{row[Col.CURATED_SPLIT]}/{row[Col.LABEL]}/{Path(row[Col.PATH]).name}"
                      if pd.notna(row[Col.LABEL]) else f"{row[Col.CURATED_SPLIT]}/{Path(row[Col.PATH]).name}"
                      for _, row in kept.iterrows())
    assert [name for name in written if not name.startswith(".")] == expected
    for path, name in zip(kept[Col.PATH], export_names(kept)):
        target = dest / name
        assert target.read_bytes() == before[path][0]
        assert target.is_symlink() == (mode == "symlink")
        assert os.path.samefile(target, path) == (mode != "copy")
    assert source_state(kept[Col.PATH]) == before


def test_a_full_destination_is_refused_unless_replaced(written_output, tmp_path, capsys):
    out, _ = written_output
    dest = tmp_path / "export"
    dest.mkdir()
    (dest / "mine.txt").write_text("a user's file")
    with pytest.raises(OutputError, match="not empty"):
        export_splits(out, dest)
    assert (dest / "mine.txt").read_text() == "a user's file"
    assert main([str(out), str(dest)]) == 2  # python -m flows.export OUT DEST
    assert "--replace" in capsys.readouterr().err

    assert main([str(out), str(dest), "--replace"]) == 0
    assert not (dest / "mine.txt").exists() and {"train", "val", "unlabeled"} <= {p.name for p in dest.iterdir()}
    assert "exported" in capsys.readouterr().out


def test_files_of_one_name_in_one_folder_get_a_stable_suffix(written_output, tmp_path):
    """Two kept files named alike in different source folders, written to one split and label (as reassign can
    send them): the first by path keeps the name, the other gets a suffix from its path, the same every time."""
    out, _ = written_output
    edited = tmp_path / "out"
    shutil.copytree(out, edited)
    table = pq.read_table(edited / "manifest.parquet")
    frame = table.to_pandas()
    kept_val = frame[(frame[Col.ACTION] == "keep") & (frame[Col.SPLIT] == "val") & frame[Col.LABEL].notna()]
    row = kept_val.index[0]
    label, name = frame.at[row, Col.LABEL], Path(frame.at[row, Col.PATH]).name
    twin = tmp_path / "elsewhere" / name
    twin.parent.mkdir()
    shutil.copyfile(frame.at[row, Col.PATH], twin)
    extra = frame.loc[[row]].assign(**{Col.PATH: str(twin)})
    frame = pd.concat([frame, extra], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), edited / "manifest.parquet")

    names = export_names(frame[frame[Col.ACTION] == "keep"])
    clashing = names[names.str.startswith(f"val/{label}/{Path(name).stem}")]
    assert sorted(clashing) == sorted(names[clashing.index])
    assert len(set(clashing)) == 2 and f"val/{label}/{name}" in set(clashing)
    assert sorted(export_names(frame[frame[Col.ACTION] == "keep"].iloc[::-1])) == sorted(names)
    export_splits(edited, tmp_path / "export")
    assert len(list((tmp_path / "export" / "val" / label).glob(f"{Path(name).stem}*"))) == 2
