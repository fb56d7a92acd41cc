"""Shared fixtures. Prefect state goes to a temporary home so tests never touch the user's ~/.prefect.

The whole suite runs behind a socket guard (tests/netguard): this process and every Python subprocess a test
starts refuse and record any connection or name lookup beyond this machine, and the session fails if one was
attempted. So every test is also a proof that fastdup, Prefect and Great Expectations stayed offline.

Tests never write into the repository: every run gets its own output folder and cache under pytest's temporary
folder (the configured cache, data/cache, is inside the repository, and a warm one would make later sessions test
something else). The session fails, naming the paths, if a file in the repository appeared, changed or vanished
while it ran; only the folders a test run is expected to write are left out (`EXPECTED_WRITES`)."""

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Written by setting up and running the tests, not by a test: the venv `make test` creates in a fresh clone,
# bytecode and pytest's own cache. `.git` changes when someone commits meanwhile.
EXPECTED_WRITES = frozenset({".git", ".venv", "__pycache__", ".pytest_cache"})


def repository_files(root: Path = REPO) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` outside `EXPECTED_WRITES`: relative path (a folder's ends in "/") ->
    (size, modification time in ns); (0, 0) for a folder, whose own time changes with what it holds."""
    listing = {}
    for folder, folders, files in os.walk(root):
        folders[:] = [name for name in folders if name not in EXPECTED_WRITES]
        here = Path(folder)
        listing.update({f"{(here / name).relative_to(root)}/": (0, 0) for name in folders})
        for name in files:
            if name in EXPECTED_WRITES:
                continue
            try:
                stat = (here / name).lstat()
            except FileNotFoundError:  # removed while the walk went by
                continue
            listing[str((here / name).relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return listing


def repository_changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """What differs between two `repository_files` listings, one line per path: new, changed or removed."""
    return [f"{'new' if path not in before else 'removed' if path not in after else 'changed'}: {path}"
            for path in sorted(before.keys() | after.keys()) if before.get(path) != after.get(path)]


_REPOSITORY_BEFORE = repository_files()  # before any test module is imported, let alone run

# The session's own state, removed when it ends. Before anything imports Prefect: its settings are read at import
# time. Hypothesis would keep its example database and caches in .hypothesis/ under the working directory.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="curate-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_SESSION_DIR / "prefect" / "results")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(_SESSION_DIR / "hypothesis")

_GUARD_DIR = Path(__file__).parent / "netguard"
NETWORK_LOG = _SESSION_DIR / "network-attempts.log"
NETWORK_LOG.touch()
os.environ["CURATE_NETGUARD_LOG"] = str(NETWORK_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_GUARD_DIR), str(REPO), os.environ.get("PYTHONPATH", "")]
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
    status = main([*split_args(root), "--out", str(out), "--set", f"cache_dir={tmp_path_factory.mktemp('cache')}"])
    manifest = pd.read_parquet(out / "manifest.parquet").set_index(Col.PATH, drop=False)
    return status, out, manifest, truth


@pytest.fixture(scope="session")
def written_output(tmp_path_factory):
    """A curated output folder as a run writes it, made by the stage functions without a flow run or fastdup: real
    JPEGs through ingest; similarity and verification hand-made (a copy in train/cat, and train/dog/4 sharing ground
    with val/dog/7); then relations, classification, the gate's expectations, `write_staged` and `publish`. Returns
    (output folder, manifest indexed by path). Shared by the session: a test that edits it edits a copy."""
    from tasks.config import CurateConfig
    from tasks.expectations import run_expectations
    from tasks.ingest import find_files, ingest
    from tasks.outputs import new_staging, publish, summarize, write_staged
    from tasks.schema import Col, Relation
    from tasks.similarity import SIMILARITY
    from tests.test_classify import classify_with_pairs, make_matches, make_similarity

    root, out = tmp_path_factory.mktemp("written-data"), tmp_path_factory.mktemp("written") / "out"
    names = ["train/cat/0.jpg", "train/cat/1.jpg", "train/cat/2.jpg", "train/dog/3.jpg", "train/dog/4.jpg",
             "train/dog/5.jpg", "val/cat/6.jpg", "val/dog/7.jpg", "val/dog/8.jpg", "unlabeled/9.jpg", "unlabeled/10.jpg"]
    for seed, name in enumerate(names):
        write_texture(root / name, seed=seed)
    files = ingest(find_files({split: root / split for split in ("train", "val", "unlabeled")}, (".jpg",)))
    rows = dict(zip(files[Col.PATH], files[Col.ROW]))
    row = {name: rows[str(root / name)] for name in names}
    copy, overlap = (row["train/cat/0.jpg"], row["train/cat/1.jpg"]), (row["train/dog/4.jpg"], row["val/dog/7.jpg"])
    similarity = make_similarity([(*sorted(copy), 0.995), (*sorted(overlap), 0.93)])
    matches = make_matches([(*sorted(copy), Relation.DUPLICATE.value), (*sorted(overlap), Relation.OVERLAP.value)])
    config = CurateConfig()
    manifest, pairs = classify_with_pairs(files, similarity, matches, config)
    staging = new_staging(out)
    gate = run_expectations(manifest, pairs, config, staging / "quality" / "data_docs")
    bands = config.expert.bands.thresholds()
    summary = summarize(manifest, pairs, similarity, bands, [], gate)
    write_staged(staging, manifest, pairs, summary, gate, {"config": config.model_dump(mode="json")},
                 "Curate report: written", similarity.pairs[SIMILARITY].to_numpy(), bands)
    publish(staging, out)
    return out, manifest.set_index(Col.PATH, drop=False)


def pytest_sessionfinish(session, exitstatus):
    attempts = NETWORK_LOG.read_text().splitlines()
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
    if attempts:
        print(f"\nnetwork access attempted during the tests ({len(attempts)}):\n" + "\n".join(attempts[:20]))
        session.exitstatus = 1
    written = repository_changes(_REPOSITORY_BEFORE, repository_files())
    if written:
        print(f"\nthe tests wrote into the repository {REPO} ({len(written)} paths; a test writes under its tmp_path, "
              "and a curate run needs --out and --set cache_dir=... there; or was the repository edited meanwhile?):\n"
              + "\n".join(written[:20]))
        session.exitstatus = 1


# A generated aerial-looking scene for the verification tests (tests/test_verify*.py), its side in pixels.
SIZE = 400


def textured_scene(seed: int, size: int = SIZE) -> np.ndarray:
    """A colour 'aerial' scene: multi-scale smooth noise (texture) plus random fields and roofs (structure)."""
    import cv2  # imported here: most tests never need OpenCV

    rng = np.random.default_rng(seed)
    gray = np.zeros((size, size), np.float32)
    for sigma, weight in ((1.5, 0.3), (4, 0.5), (12, 1.0), (30, 1.2)):
        noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
        gray += weight * noise / noise.std()
    gray = (gray - gray.min()) / (gray.max() - gray.min()) * 160 + 40
    for _ in range(60):
        centre = rng.integers(0, size, 2)
        corners = (centre + rng.integers(-30, 30, (4, 2))).astype(np.int32)
        cv2.fillConvexPoly(gray, cv2.convexHull(corners), float(rng.integers(0, 255)))
    tint = rng.uniform(0.7, 1.0, 3).astype(np.float32)
    return np.clip(gray[:, :, None] * tint, 0, 255).astype(np.uint8)


def save(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    """`image` (BGR, as OpenCV holds it) written as a JPEG at `path`."""
    import cv2

    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return textured_scene(seed=1)


@pytest.fixture(scope="module")
def scene_path(tmp_path_factory: pytest.TempPathFactory, scene: np.ndarray) -> Path:
    return save(tmp_path_factory.mktemp("scene") / "original.jpg", scene)
