"""Peak memory of this process, for tests and benchmarks that bound it."""

from __future__ import annotations


def peak_rss_mib() -> float:
    """This process's own peak resident memory, MiB: VmHWM on Linux, ru_maxrss elsewhere. Not ru_maxrss on
    Linux: it carries the parent's peak over fork and exec, so a child of a process that once held 3 GB
    reads 3 GB before doing anything."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
