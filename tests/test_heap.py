"""Handing the heap's free pages back (glibc's malloc_trim)."""

from __future__ import annotations

import platform
import time

from elcrec.heap import HeapTrimmer


def test_a_trimmer_trims_only_when_due():
    trimmer = HeapTrimmer(0.05)
    if platform.libc_ver()[0] == "glibc":
        assert trimmer.available
    assert not trimmer.maybe_trim()  # not due yet
    time.sleep(0.06)
    assert trimmer.maybe_trim() is trimmer.available
    assert not trimmer.maybe_trim()
    assert trimmer.trims == int(trimmer.available)


def test_zero_turns_trimming_off():
    trimmer = HeapTrimmer(0)
    time.sleep(0.01)
    assert not trimmer.available and not trimmer.maybe_trim()
