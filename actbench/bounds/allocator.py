"""Keep freed CPU memory inside the process, so large tensors do not page-fault on every allocation.

PyTorch's CPU tensors come from glibc ``malloc``, which serves blocks above a threshold (at most
32 MiB) with a fresh ``mmap`` and returns freed heap memory to the system. Every new large tensor then
starts as untouched pages, and the kernel's page faults and zeroing cost more than the arithmetic on
it: on a 2-core VM a bound pass's 70 MB coefficient matrices made elementwise ops 3-10x slower, and
interleaving bound passes with forwards slowed the forwards too. PyTorch's CPU tuning guide advises a
caching allocator (jemalloc, tcmalloc) for the same reason; :func:`tune_allocator` gets most of the
effect from glibc itself through ``mallopt``: blocks up to 1 GiB come from the heap and freed memory
stays mapped (the process keeps its peak footprint, like a caching allocator).

It changes the whole process, so it is explicit: the CLI and the benchmarks call it; library users
may. Set ``ACTBENCH_MALLOC_TUNING=0`` to skip it. It does nothing where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # bytes: larger blocks are still mapped (and unmapped) individually
TRIM_THRESHOLD = 2**31 - 1  # bytes of free heap top kept before returning memory (the int maximum)

_applied: bool | None = None


def tune_allocator() -> bool:
    """Apply the glibc settings above once per process; True when they are in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("ACTBENCH_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
    _applied = bool(mapped) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
