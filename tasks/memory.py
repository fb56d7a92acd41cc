"""Keep the process's memory close to what it holds.

glibc's malloc keeps freed memory for reuse in heaps called arenas, and gives threads arenas of their own, up to
eight per core. A run allocates arrays of a few megabytes by the thousand (search blocks, correlation spectra,
decoded images) on several threads: the freed space is left spread over the arenas, and the resident memory
grows with the run's history rather than with what it holds. Sampled at 100,000 images, verification's chunks
grew the process by 1.4 GB beyond their feature cache, in 17 arenas of 64 MB. Two measures, both no-ops where
the C library is not glibc: `limit_malloc_arenas` (called when the `tasks` package is imported), and
`release_free_memory`, which the stages call where a large working set has just been dropped.
"""

import ctypes
import ctypes.util
import functools
import os

# mallopt's parameter number for the arena limit (glibc's malloc.h).
_M_ARENA_MAX = -8
# Arenas that serve all threads: verification runs four threads at a time (two chunks of two), which spend their
# time in OpenCV and numpy, not in malloc. With 2, the sampled chunks peaked 150 MB lower.
MALLOC_ARENAS = 2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (it has malloc_trim); None elsewhere (macOS, musl)."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return library if hasattr(library, "malloc_trim") and hasattr(library, "mallopt") else None


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let at most `arenas` malloc arenas serve this process's threads, unless the MALLOC_ARENA_MAX environment
    variable already decides. glibc fixes the limit when a thread first needs an arena of its own, so this acts
    only if called before that; True if the limit was set."""
    library = _glibc()
    if library is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(library.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Return the free memory of every malloc arena to the operating system (it costs a few milliseconds).
    True when some was returned; False when there was none, or where the C library cannot."""
    library = _glibc()
    return bool(library.malloc_trim(0)) if library is not None else False
