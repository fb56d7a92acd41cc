"""Progress bars for the long stages, on standard error and only when it is a terminal (never in logs or CI)."""

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def progress(items: Iterable[Item], stage: str, total: int, unit: str) -> Iterator[Item]:
    """`items`, unchanged, with a progress bar named after the stage while a person is watching."""
    # disable=None: tqdm itself switches the bar off when standard error is not a terminal.
    return iter(tqdm(items, desc=stage, total=total, unit=unit, disable=None, leave=False))
