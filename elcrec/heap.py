"""Keep a long-running trainer's resident memory from growing with the stream.

A trainer allocates and frees tensors of changing shapes (mini-batches and
attention grids of varying length) millions of times. glibc's malloc keeps the
freed memory of its heap mapped, fragmented, and serves later requests of
other sizes from fresh pages: on ml-100k the trainer's resident memory grew
from 0.8 GB to 3.1 GB in its first 40 000 events, and to 4.2 GB over the whole
stream, with every structure it keeps bounded by its settings.

``malloc_trim(0)`` hands the free pages of the heap back to the system. Called
at most every few seconds between steps it keeps the trainer's resident
memory near its working set, at a small cost in speed (pages handed back are
faulted in again); ``bench/stream_quality.py --rss-every`` shows the figures
(bench/README.md). Fixing glibc's mmap threshold instead keeps memory as flat
but maps and zeroes every large tensor afresh: half the speed.

Off glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time

logger = logging.getLogger(__name__)


def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Hands the heap's free pages back at most every ``every_s`` seconds.

    ``every_s`` 0 turns it off. :meth:`maybe_trim` is cheap when not due; call
    it between steps.
    """

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._trim = _malloc_trim() if every_s > 0 else None
        self._last = time.monotonic()
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe_trim(self) -> bool:
        """Trim if due; True if it did."""
        if self._trim is None or time.monotonic() - self._last < self.every_s:
            return False
        self._trim(0)
        self._last = time.monotonic()
        self.trims += 1
        return True
