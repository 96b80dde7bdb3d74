"""Keep freed memory inside the process on CPU, so big activations are not page-faulted back every step.

glibc hands out blocks above its mmap threshold (at most 32 MiB) as fresh pages from the kernel and
gives them back on ``free``. At 256 px a U-Net's activations are 32–64 MiB each, so every pass
faults (and zeroes) its memory in again, and the training step, which keeps the decoder half's
activations for the backward, pays most: measured on a 2-core CPU at the celebahq-256 shape, one
thread, batch 2, the decoder half with graph took 14.1 s per image against 11.9 s without graph,
and 11.1 s once freed memory was kept (benchmarks/RESULTS.md). Turning off mmap for large blocks and
never trimming the heap keeps that memory for reuse; the price is that the process holds its peak
memory until it exits. CUDA tensors are unaffected (PyTorch's caching allocator already reuses
them), and so is any C library other than glibc. ``HSEP_KEEP_FREED_MEMORY=0`` turns it off.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Keep freed heap memory for reuse (see the module docstring); True when the setting is in
    force. ``Diffusion`` calls it for a U-Net on the CPU; applied once per process."""
    return os.environ.get("HSEP_KEEP_FREED_MEMORY", "1") != "0" and _mallopt_keep()


def _mallopt_keep() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  glibc only (musl has no such symbol)
    except (OSError, AttributeError):
        return False
    # no mmap for large blocks; trim threshold -1 = SIZE_MAX: never give the heap top back
    return libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1
