"""What every benchmark under bench/ shares: where results go, timing, the machine, JSON, tables.

    from bench.harness import ROOT, RESULTS, timed, machine, write_results, markdown_table, hms, u2net_folder

A benchmark times with `timed` (median of repeats, CUDA synchronised), describes the machine with
`machine()` (stored in every result file, so a figure always travels with the machine and torch that
produced it), writes its JSON with `write_results` into bench/results/ and prints a Markdown table
with `markdown_table` last. docs/benchmarks.md quotes the tables and names the command that made each.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sync(device) -> None:
    """Wait for queued CUDA work (a no-op on the CPU), so a timer measures the work, not its launch."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device="cpu", reps: int = 3, warmup: int = 0):
    """(median seconds, every time, the last result) of ``fn()`` run ``reps`` times after ``warmup`` runs."""
    if reps < 1:
        raise ValueError(f"timed: reps must be at least 1, got {reps}")
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The CPU features that decide CLIPasso's CPU precision (native bf16: avx512_bf16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in set(flags) if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"))


def machine(threads: Optional[int] = None, device: str = "cpu") -> dict:
    """The machine a figure was measured on: CPU, cores, flags, torch, Python (and the GPU when used)."""
    info = dict(cpu=cpu_name(), cores=os.cpu_count(), flags=cpu_flags(), python=platform.python_version())
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = threads if threads is not None else torch.get_num_threads()
        if str(device).startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        info["threads"] = threads
    return info


def write_results(name_or_path, data: dict, machine_info: Optional[dict] = None) -> Path:
    """Write ``data`` as JSON (with the machine and the UTC time under ``"machine"`` unless given) to
    bench/results/<name>.json or to a path; written to a temporary file first, then renamed."""
    path = Path(name_or_path)
    if path.suffix != ".json" and path.parent == Path("."):
        path = RESULTS / f"{path}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    out = dict(data)
    out.setdefault("machine", machine_info or machine())
    out.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_results(name_or_path) -> dict:
    path = Path(name_or_path)
    if path.suffix != ".json" and path.parent == Path("."):
        path = RESULTS / f"{path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the benchmark first (without --table-only)")
    return json.loads(path.read_text())


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: Optional[str] = None) -> str:
    """A Markdown table; ``align`` is one letter per column, ``l`` or ``r`` (numbers right by default)."""
    rows = [["-" if v is None else str(v) for v in r] for r in rows]
    if align is None:
        align = "".join("r" if rows and all(_numeric(r[i]) for r in rows) else "l" for i in range(len(headers)))
    if len(align) != len(headers) or any(len(r) != len(headers) for r in rows):
        raise ValueError("markdown_table: every row and the alignment need one entry per header")
    rule = ["---:" if a == "r" else "---" for a in align]
    return "\n".join("| " + " | ".join(r) + " |" for r in [list(headers), rule, *rows])


def _numeric(text: str) -> bool:
    t = text.strip().rstrip("x×%").replace(",", "")
    try:
        float(t)
        return True
    except ValueError:
        return text.strip() == "-"


def hms(seconds: float) -> str:
    """1h04m, 5m10s: how long a whole sketch takes, to the second below an hour."""
    s = int(round(seconds))
    h, r = divmod(s, 3600)
    m, sec = divmod(r, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def u2net_folder() -> Optional[str]:
    """The folder holding u2netp.onnx: $U2NET_HOME when it has the file, else the copy bundled with the
    package (clipasso/data), so matting never needs a download or a folder outside the checkout."""
    for cand in (os.environ.get("U2NET_HOME"), ROOT / "clipasso" / "data", Path.home() / ".u2net"):
        if cand and (Path(cand) / "u2netp.onnx").is_file():
            return str(cand)
    return None
