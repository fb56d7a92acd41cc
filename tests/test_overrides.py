import pandas as pd
import pytest

from tasks.config import CurateConfig
from tasks.errors import ConfigError
from tasks.overrides import apply_overrides, read_overrides
from tasks.schema import Action, Col
from tests.test_classify import NO_MATCHES, by_path, classify, make_files, make_similarity


def test_csv_and_yaml_files(tmp_path):
    (tmp_path / "r.csv").write_text("path,action\n/d/a.jpg,keep\n/d/b.jpg, drop\n")
    (tmp_path / "r.yaml").write_text("/d/a.jpg: keep\n/d/b.jpg: drop\n")
    expected = {"/d/a.jpg": Action.KEEP, "/d/b.jpg": Action.DROP}
    assert read_overrides(tmp_path / "r.csv") == expected == read_overrides(tmp_path / "r.yaml")


@pytest.mark.parametrize("name, text, message", [
    ("bad.csv", "file,decision\n/d/a.jpg,keep\n", "columns path and action"),
    ("bad.yaml", "/d/a.jpg: maybe\n", "must be keep or drop"),
    ("bad.yml", "- /d/a.jpg\n", "must map each path"),
])
def test_bad_files_name_the_problem(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_overrides(tmp_path / name)


def test_the_reviewer_decides_and_the_reason_keeps_curates_view():
    files = make_files([
        {Col.PATH: "/d/outlier.jpg", Col.SPLIT: "train"},
        {Col.PATH: "/d/fine.jpg", Col.SPLIT: "train"},
        {Col.PATH: "/d/broken.jpg", Col.SPLIT: "train", Col.VALID: False, Col.ERROR: "empty file (0 bytes)"},
    ])
    overrides = {"/d/fine.jpg": Action.DROP, "/d/broken.jpg": Action.KEEP, "/d/elsewhere.jpg": Action.KEEP}
    manifest = by_path(classify(files, make_similarity([]), NO_MATCHES, CurateConfig(), overrides))
    assert manifest["/d/fine.jpg"][Col.ACTION] == "drop"
    assert manifest["/d/fine.jpg"][Col.REASON] == "reviewer: drop (Curate: keep: no issue)"
    assert manifest["/d/broken.jpg"][Col.ACTION] == "drop", "an unreadable file is never kept"
    assert manifest["/d/outlier.jpg"][Col.ACTION] == "keep"


def test_the_reason_names_curates_action_once():
    manifest = pd.DataFrame({Col.PATH: ["/d/a.jpg", "/d/b.jpg", "/d/c.jpg"], Col.VALID: [True, True, True],
                             Col.ACTION: ["review", "drop", "keep"],
                             Col.REASON: ["review: outlier", "duplicate of /d/x.jpg", "no issue"]}).astype("string")
    manifest[Col.VALID] = manifest[Col.VALID].astype(bool)
    decided = apply_overrides(manifest, {"/d/a.jpg": Action.KEEP, "/d/b.jpg": Action.KEEP})
    assert decided[Col.REASON].tolist() == ["reviewer: keep (Curate: review: outlier)",
                                            "reviewer: keep (Curate: drop: duplicate of /d/x.jpg)", "no issue"]
    assert decided[Col.ACTION].tolist() == ["keep", "keep", "keep"]
