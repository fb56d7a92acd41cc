"""Memory that no object holds goes back to the operating system (`tasks.memory`)."""

import os
import subprocess
import sys

import pytest

from tasks.memory import MALLOC_ARENAS, _glibc

pytestmark = pytest.mark.slow  # every test measures a fresh subprocess

needs_glibc = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only")

# Fills malloc's heap with 64 KB arrays (below the size that gets pages of its own), frees every other one, and
# prints the resident memory in MiB after the free and after release_free_memory().
FRAGMENTED_HEAP = """
import os
import numpy as np
from tasks.memory import release_free_memory

def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

arrays = [np.ones(64 * 1024 - 256, np.uint8) for _ in range(3000)]
del arrays[::2]
before = resident_mib()
released = release_free_memory()
print(before, resident_mib(), released)
"""

# Eight threads allocate at once, then glibc lists its arenas on standard error ("Arena 0:", "Arena 1:", ...).
THREADS_ALLOCATE = """
{first}
import ctypes, threading
import numpy as np
held = []
threads = [threading.Thread(target=lambda: held.append([np.ones(30000, np.uint8) for _ in range(200)]))
           for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()
"""


def run_python(script: str) -> subprocess.CompletedProcess:
    environment = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environment)


@needs_glibc
def test_memory_freed_between_live_arrays_is_returned() -> None:
    before, after, released = run_python(FRAGMENTED_HEAP).stdout.split()

    # 1,500 freed arrays of 64 KB (94 MiB) sat in holes between live ones; most of it is returned.
    assert released == "True"
    assert float(before) - float(after) > 60, (before, after)


@needs_glibc
def test_importing_tasks_limits_the_malloc_arenas_threads_get() -> None:
    arenas_with_tasks = run_python(THREADS_ALLOCATE.format(first="import tasks")).stderr.count("Arena ")
    arenas_without = run_python(THREADS_ALLOCATE.format(first="")).stderr.count("Arena ")

    assert arenas_with_tasks == MALLOC_ARENAS
    assert arenas_without > MALLOC_ARENAS
