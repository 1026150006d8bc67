"""CPU threads for engines that run many small forward/backward passes: never more than the free cores.

Measured cause (issue 24, ``benchmarks/attribution.py``): PyTorch's CPU kernels run in OpenMP parallel
regions; at the end of each region every thread waits at a barrier, and libgomp's threads *busy-wait* there
(spin) before sleeping. On a machine whose cores are taken by other processes, one of our threads is
descheduled while the others spin, so each of the thousands of small operations of an attribution costs a
scheduler time slice: with 2 threads on 2 busy cores (load average 7–8) probe's integrated gradients took
4.5 s wall for 2.9 s of CPU, with 1 thread 1.9 s wall for 0.8 s CPU — the extra CPU time was spinning.
``OMP_WAIT_POLICY=PASSIVE`` confirms it (2 threads: 2.1 s), but it must be set before torch is imported.

:func:`free_cpu_threads` counts the cores not taken by *other* runnable tasks (the instantaneous
``running`` field of ``/proc/loadavg``, minimum of a few samples so our own spinning threads do not count)
and :func:`contention_aware_threads` lowers ``torch.set_num_threads`` to that number for the duration of a
call (never raises it; restored afterwards). On a quiet machine nothing changes. On systems without
``/proc/loadavg`` the current setting is kept::

    from probe.methods.threads import contention_aware_threads
    with contention_aware_threads() as threads:
        ...  # torch CPU work, at most `threads` intra-op threads
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["contention_aware_threads", "free_cpu_threads"]


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cpu_threads(samples: int = 5, interval_s: float = 0.002) -> int | None:
    """Cores available to this process minus other runnable tasks (≥ 1); None where it cannot be read.

    ``samples`` readings of ``/proc/loadavg`` ``interval_s`` apart; the minimum runnable count is used (our
    own threads may be spinning in one reading). The reading task itself is subtracted."""
    counts = []
    for k in range(max(1, samples)):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(running)
        if k + 1 < samples:
            time.sleep(interval_s)
    others = max(0, min(counts) - 1)
    return max(1, _available_cpus() - others)


@contextmanager
def contention_aware_threads(device: torch.device | str | None = None) -> Iterator[int]:
    """Within the block, torch uses at most :func:`free_cpu_threads` intra-op threads (CPU work only: a
    CUDA ``device`` leaves the setting alone). Yields the number in effect."""
    current = torch.get_num_threads()
    if device is not None and torch.device(device).type != "cpu":
        yield current
        return
    free = free_cpu_threads()
    wanted = current if free is None else max(1, min(current, free))
    if wanted != current:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if wanted != current:
            torch.set_num_threads(current)
