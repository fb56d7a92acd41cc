"""The pinned dependencies import together and Parquet round-trips (fastdup needs numpy<2; pyarrow 26 refuses it)."""

import importlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def test_core_packages_import_together():
    for module in ("fastdup", "prefect", "great_expectations", "pandas", "pyarrow", "cv2", "PIL", "scipy", "yaml"):
        importlib.import_module(module)
    assert np.__version__.startswith("1."), "fastdup 2.54 requires numpy < 2"
    assert int(pa.__version__.split(".")[0]) < 26, "pyarrow 26 refuses to import with numpy < 2"


def test_parquet_round_trip(tmp_path):
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "issues": [["corrupt"], []], "score": [0.5, None]})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["path"].tolist() == ["a.jpg", "b.jpg"]
    assert [list(issues) for issues in back["issues"]] == [["corrupt"], []]
    assert np.isnan(back["score"][1])
