"""Shared fixtures. Prefect state goes to a temporary home so tests never touch the user's ~/.prefect.

The whole suite runs behind a socket guard (tests/netguard): this process and every Python subprocess a test
starts refuse and record any connection or name lookup beyond this machine, and the session fails if one was
attempted. So every test is also a proof that fastdup, Prefect and Great Expectations stayed offline."""

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports Prefect: its settings are read at import time.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="curate-tests-prefect-"))
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_PREFECT_HOME / "results")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

_GUARD_DIR = Path(__file__).parent / "netguard"
NETWORK_LOG = _PREFECT_HOME / "network-attempts.log"
NETWORK_LOG.touch()
os.environ["CURATE_NETGUARD_LOG"] = str(NETWORK_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_GUARD_DIR), str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
).rstrip(os.pathsep)
_guard_spec = importlib.util.spec_from_file_location("curate_netguard", _GUARD_DIR / "sitecustomize.py")
_guard_spec.loader.exec_module(importlib.util.module_from_spec(_guard_spec))  # guards this process too

import tasks  # noqa: E402,F401  (switches off telemetry before fastdup or Prefect load)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# The development tiles sit beside the repository (../shared/data/rsscn7); a clone made elsewhere (the fresh-clone
# check's) finds them where this machine keeps them.
RSSCN7 = next(
    (path for path in (Path(__file__).resolve().parents[2] / "shared" / "data" / "rsscn7",
                       Path("/work/shared/data/rsscn7")) if path.is_dir()),
    Path("/work/shared/data/rsscn7"),
)


def write_texture(path: Path, seed: int, size: int = 96) -> Path:
    """A random-texture RGB JPEG: distinct seeds give visually distinct images."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, size=(size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)
    return path


@pytest.fixture
def texture():
    return write_texture


def split_args(root: Path) -> list[str]:
    return [arg for split in ("train", "val", "unlabeled") for arg in ("--split", f"{split}={root / split}")]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The generated demo dataset and its ground truth (path -> DemoFile)."""
    from tasks.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return root, {str(item.path): item for item in build_demo_dataset(root)}


@pytest.fixture(scope="session")
def curated(demo, tmp_path_factory):
    """One real run of the curate flow over the demo dataset, shared by the tests that read its outputs."""
    from flows.curate import main
    from tasks.schema import Col

    root, truth = demo
    out = tmp_path_factory.mktemp("curated")
    status = main([*split_args(root), "--out", str(out)])
    manifest = pd.read_parquet(out / "manifest.parquet").set_index(Col.PATH, drop=False)
    return status, out, manifest, truth




def pytest_sessionfinish(session, exitstatus):
    attempts = NETWORK_LOG.read_text().splitlines()
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
    if attempts:
        print(f"\nnetwork access attempted during the tests ({len(attempts)}):\n" + "\n".join(attempts[:20]))
        session.exitstatus = 1
