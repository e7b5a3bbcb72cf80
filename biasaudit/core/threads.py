"""CPU threads for torch: as many as the CPUs this process may run on, and no spinning.

A container or ``taskset`` often grants fewer CPUs than the machine has, and
``os.cpu_count()`` reports the machine. Torch then starts one OpenMP thread per machine
core; on a shared box those threads busy-wait (spin) for each other at every parallel
region and training can run ten times slower than on one thread. :func:`configure_threads`
sizes the pools from ``os.sched_getaffinity`` and asks OpenMP to sleep instead of spin
(``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT=0``, ``KMP_BLOCKTIME=0``). OpenMP reads
those variables once, when torch is first imported: call this before anything imports
torch (the CLI commands that train do), or export them in the shell.
``BIASAUDIT_THREADS`` overrides the thread count.

>>> available_cpus() >= 1
True
"""

from __future__ import annotations

import os
import sys

PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}


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


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: ``BIASAUDIT_THREADS``, else
    ``OMP_NUM_THREADS``, else the available CPUs) and make OpenMP wait passively. Returns
    the thread count in use.

    Environment values the user already set win. If torch is already imported the wait
    policy cannot change any more; the thread count still does.
    """
    for key in ("BIASAUDIT_THREADS", "OMP_NUM_THREADS"):
        env_threads = os.environ.get(key, "").strip()
        if threads is None and env_threads.isdigit() and int(env_threads) > 0:
            threads = int(env_threads)
    n = max(1, int(threads) if threads else available_cpus())
    if passive_openmp():
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
