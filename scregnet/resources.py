"""Peak memory and wall time of a block of work (a pipeline step, a benchmark stage).

On Linux the kernel's high-water mark of resident memory (VmHWM) is reset at the start
(`/proc/self/clear_refs`, value 5), so several steps in one process each get their own peak;
elsewhere the process's lifetime peak (`ru_maxrss`) is the best available.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process; False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (since the last reset, where resets work)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


def machine() -> str:
    """The hardware a benchmark ran on, for its table: `x86_64, 2 CPU cores, 24 GiB RAM, Python 3.11.7`."""
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use, not the host's count
    except AttributeError:
        cores = os.cpu_count() or 0
    try:
        ram = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        ram = ""
    return f"{platform.machine()}, {cores} CPU cores{ram}, Python {platform.python_version()}"


class Measured:
    """`with Measured() as m:` ... then `m.seconds`, `m.peak_rss_mib`, `m.as_dict()`."""

    def __enter__(self) -> Measured:
        self.per_block = reset_peak_rss()
        self.start = time.perf_counter()
        self.seconds = 0.0
        self.peak_rss_mib = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.peak_rss_mib = peak_rss_mib()

    def as_dict(self) -> dict[str, float | bool]:
        """seconds, peak_rss_mib, and whether the peak is this block's own (else the process's)."""
        return {
            "seconds": round(self.seconds, 3),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "peak_is_per_step": self.per_block,
        }
