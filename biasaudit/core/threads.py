"""CPU threads for torch: as many as the CPUs this process may run on, no spinning, and a
heap that keeps what a training step frees for the next one.

A container or ``taskset`` often grants fewer CPUs than the machine has, and
``os.cpu_count()`` reports the machine. Torch then starts one OpenMP thread per machine
core; on a shared box those threads busy-wait (spin) for each other at every parallel
region and training can run ten times slower than on one thread. :func:`configure_threads`
sizes the pools from ``os.sched_getaffinity`` and asks OpenMP to sleep instead of spin
(``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT=0``, ``KMP_BLOCKTIME=0``). OpenMP reads
those variables once, when torch is first imported: call this before anything imports
torch (the CLI commands that train do), or export them in the shell.
``BIASAUDIT_THREADS`` overrides the thread count.

It also keeps glibc's heap from handing memory back to the kernel at every free
(:func:`keep_freed_heap`). A training step allocates and frees tens of MB of activations;
with glibc's default thresholds those pages are unmapped or trimmed after each step and
faulted in again, one 4 KB page at a time, by the next: 2.1 million page faults and 4.4 s
of kernel time for two 32 px leaves, 57 of the 320 CPU seconds of a default 2,000-image
scan (`reports/benchmarks.md`, session 7).

>>> available_cpus() >= 1
True
"""

from __future__ import annotations

import os
import sys

PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}

#: glibc ``mallopt`` settings of :func:`keep_freed_heap`: blocks up to 64 MiB come from the
#: heap (a 48 px batch of 128 views has 38 MB activations) and up to 128 MiB of freed heap
#: stays mapped for the next step
HEAP_OPTIONS = {"M_MMAP_THRESHOLD": 64 << 20, "M_TRIM_THRESHOLD": 128 << 20}
_MALLOPT_PARAM = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3}
_heap_kept = False


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask; ``os.cpu_count()`` where unsupported)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def passive_openmp() -> bool:
    """Ask OpenMP not to spin (unless the user chose otherwise); True when it can still
    take effect, i.e. torch is not imported yet."""
    if "torch" in sys.modules:
        return False
    for key, value in PASSIVE_ENV.items():
        os.environ.setdefault(key, value)
    return True


def keep_freed_heap() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the kernel
    at every free (:data:`HEAP_OPTIONS`); True when the settings are in effect.

    Nothing changes off glibc, or when the user chose malloc settings of their own
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``). The cost is
    freed memory held between steps: at most the trim threshold per arena. A finished stage
    still hands it all back (``biasaudit.core.io.release_freed_memory``).
    """
    global _heap_kept
    if _heap_kept:
        return True
    if any(key in os.environ for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or \
            "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    _heap_kept = all(mallopt(_MALLOPT_PARAM[name], value) == 1 for name, value in HEAP_OPTIONS.items())
    return _heap_kept


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: ``BIASAUDIT_THREADS``, else
    ``OMP_NUM_THREADS``, else the available CPUs), make OpenMP wait passively and keep
    freed heap memory for reuse (:func:`keep_freed_heap`). Returns the thread count in use.

    Environment values the user already set win. If torch is already imported the wait
    policy cannot change any more; the thread count still does.
    """
    for key in ("BIASAUDIT_THREADS", "OMP_NUM_THREADS"):
        env_threads = os.environ.get(key, "").strip()
        if threads is None and env_threads.isdigit() and int(env_threads) > 0:
            threads = int(env_threads)
    n = max(1, int(threads) if threads else available_cpus())
    keep_freed_heap()
    if passive_openmp():
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
