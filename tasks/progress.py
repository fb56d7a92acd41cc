"""Progress bars for the long stages, on standard error and only when it is a terminal (never in logs or CI)."""

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO, TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def progress(items: Iterable[Item], stage: str, total: int, unit: str) -> Iterator[Item]:
    """`items`, unchanged, with a progress bar named after the stage while a person is watching."""
    # disable=None: tqdm itself switches the bar off when standard error is not a terminal.
    return iter(tqdm(items, desc=stage, total=total, unit=unit, disable=None, leave=False))


_PERCENT = re.compile(rb"\] (\d{1,3})%")


@contextlib.contextmanager
def follow_percentages(log: Path, stage: str, terminal: TextIO) -> Iterator[None]:
    """A progress bar on `terminal` driven by the last "] NN%" an engine printed into `log` (fastdup prints its
    own bars, which Curate sends to a log); nothing at all when `terminal` is not a terminal."""
    bar = tqdm(total=100, desc=stage, unit="%", file=terminal, disable=None, leave=False)
    if bar.disable:
        yield
        return
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(0.25):
            with contextlib.suppress(OSError):
                with open(log, "rb") as handle:
                    handle.seek(max(0, log.stat().st_size - 512))
                    found = _PERCENT.findall(handle.read())
                if found:
                    bar.n = min(int(found[-1]), 100)
                    bar.refresh()

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        bar.close()
