"""Rasterizer speed and memory: the tiled torch renderer against the naive dense reference, and
against diffvg (CLIPasso's renderer, 2x2 samples) on the CPU when pydiffvg is importable.

    python bench/raster.py            # CPU (2 threads) and, when present, the GPU
    python bench/raster.py --quick    # fewer repeats, dense reference only where it is cheap
    PYTHONPATH=$(python tests/diffvg_build.py) python bench/raster.py   # with the tests' diffvg build

Each case runs in its own process so peak memory is that case's alone: on CPU the rise of the peak
resident set over the process's footprint just before rendering; on GPU torch's peak allocation.
Strokes look like CLIPasso's start: a random start point and a short random walk (radius 0.05 of
the canvas), black, half-width 1.5. The loss for backward is a weighted sum of the image.
Prints a table last and writes bench/results/raster_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import RESULTS, cpu_name, machine, write_results  # noqa: E402
from clipasso.testing.memory import peak_rss_mib  # noqa: E402

CASES = [(16, 224), (32, 224), (64, 224), (256, 224), (16, 512)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(backend: str, strokes: int, size: int, device: str, repeats: int, threads: int) -> dict:
    import torch

    from clipasso.render.raster import rasterize

    torch.set_num_threads(threads)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    start = torch.rand(1, strokes, 1, 2, generator=g) * size
    steps = (torch.rand(1, strokes, 3, 2, generator=g) * 2 - 1) * 0.05 * size
    points = torch.cat([start, start + torch.cumsum(steps, 2)], 2).to(dev)
    widths = torch.full((1, strokes), 1.5, device=dev)
    colors = torch.tensor([0.0, 0.0, 0.0, 1.0], device=dev).expand(1, strokes, 4).contiguous()
    weight = torch.rand(1, 3, size, size, generator=g).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def fwd():
        with torch.no_grad():
            img, _ = rasterize(points, widths, colors, size, size, backend=backend)
        return img

    def fwd_bwd():
        p = points.clone().requires_grad_(True)
        img, _ = rasterize(p, widths, colors, size, size, backend=backend)
        (img * weight).sum().backward()
        return p.grad

    rss0 = _rss_mb()  # inputs built, nothing rendered yet
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    fwd(), fwd_bwd()  # warm-up (allocator, kernels)
    sync()
    out = {}
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1000)
        out[name + "_ms"] = statistics.median(times)
        out[name + "_min_ms"] = min(times)
    if dev.type == "cuda":
        out["extra_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = peak_rss_mib()
        out["extra_mb"] = max(0.0, peak - rss0)
    return out


def child_main(argv) -> None:
    backend, strokes, size, device, repeats, threads = argv
    res = run_case(backend, int(strokes), int(size), device, int(repeats), int(threads))
    print("RESULT " + json.dumps(res))


def measure(backend, strokes, size, device, repeats, threads, timeout=1800) -> dict:
    cmd = [sys.executable, __file__, "--child", backend, str(strokes), str(size), device, str(repeats), str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cpu + cuda when present)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=15, help="timed repeats of the torch renderer")
    ap.add_argument("--dense-repeats", type=int, default=3, help="timed repeats of the dense reference")
    ap.add_argument("--diffvg-repeats", type=int, default=3, help="timed repeats of diffvg (when installed)")
    ap.add_argument(
        "--quick", action="store_true", help="3 repeats; dense reference and diffvg only for 16 strokes at 224"
    )
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/raster_<device>.json)")
    args = ap.parse_args()

    import torch

    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append("cuda")
    if args.device == "cuda" and "cuda" not in devices:
        sys.exit("bench/raster.py: no CUDA device here; run with --device cpu")
    reps = 3 if args.quick else args.repeats
    dreps = 1 if args.quick else args.dense_repeats
    vreps = 1 if args.quick else args.diffvg_repeats
    from clipasso.render.raster import diffvg_available

    with_diffvg = diffvg_available()

    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({cpu_name()}), {args.threads} threads"
        rows = []
        for strokes, size in CASES:
            row = {"strokes": strokes, "size": size}
            row["torch"] = measure("torch", strokes, size, device, reps, args.threads)
            dense_ok = not args.quick or (strokes, size) == (16, 224)
            row["dense"] = measure("dense", strokes, size, device, dreps, args.threads) if dense_ok else None
            # diffvg: on the CPU (the backend always runs it there), where it takes under ~2 s a call
            diffvg_ok = with_diffvg and device == "cpu" and dense_ok and strokes * size <= 64 * 224
            row["diffvg"] = measure("diffvg", strokes, size, device, vreps, args.threads) if diffvg_ok else None
            rows.append(row)
            print(
                f"  {device} {strokes:4d} strokes {size}px: torch {row['torch'].get('fwd_bwd_ms', float('nan')):.1f} ms"
                + (f", dense {row['dense'].get('fwd_bwd_ms', float('nan')):.0f} ms" if row["dense"] else "")
                + (f", diffvg {row['diffvg'].get('fwd_bwd_ms', float('nan')):.0f} ms" if row["diffvg"] else ""),
                flush=True,
            )
        result = {
            "device": name,
            "torch_version": torch.__version__,
            "threads": args.threads,
            "repeats": reps,
            "dense_repeats": dreps,
            "diffvg": "pydiffvg, 2x2 samples, CPU" if with_diffvg else "not installed",
            "cases": rows,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        out = write_results(
            Path(args.out) if args.out else RESULTS / f"raster_{device}.json", result, machine(args.threads, device)
        )

        print(
            f"\nRasterizer on {name} (torch {torch.__version__}); median ms over {reps} runs "
            f"(dense: {dreps}); memory = peak rise while rendering"
        )
        print(
            "| strokes | canvas | torch fwd | torch fwd+bwd | torch mem MB | dense fwd | dense fwd+bwd | dense mem MB "
            "| speed-up fwd+bwd | diffvg fwd | diffvg fwd+bwd |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            t, d, v = r["torch"], r["dense"] or {}, r["diffvg"] or {}
            f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
            sp = (d["fwd_bwd_ms"] / t["fwd_bwd_ms"]) if d.get("fwd_bwd_ms") and t.get("fwd_bwd_ms") else None
            print(
                f"| {r['strokes']} | {r['size']} | {f(t.get('fwd_ms'))} | {f(t.get('fwd_bwd_ms'))} | {f(t.get('extra_mb'), 0)} "
                f"| {f(d.get('fwd_ms'), 0)} | {f(d.get('fwd_bwd_ms'), 0)} | {f(d.get('extra_mb'), 0)} | "
                f"{'-' if sp is None else f'{sp:.0f}x'} | {f(v.get('fwd_ms'), 0)} | {f(v.get('fwd_bwd_ms'), 0)} |"
            )
        t16 = rows[0]["torch"].get("fwd_bwd_ms")
        d16 = (rows[0]["dense"] or {}).get("fwd_bwd_ms")
        m256 = rows[3]["torch"].get("extra_mb")
        if device == "cpu":
            if t16 and d16:
                print(
                    f"target 16 strokes fwd+bwd >= 100x faster than dense: {d16 / t16:.0f}x -> "
                    f"{'met' if d16 / t16 >= 100 else 'NOT met'}"
                )
            if m256 is not None:
                print(
                    f"target 256 strokes at 224 within 200 MB extra: {m256:.0f} MB -> {'met' if m256 <= 200 else 'NOT met'}"
                )
        elif t16:
            print(f"target 16 strokes fwd+bwd under 2 ms on GPU: {t16:.2f} ms -> {'met' if t16 < 2 else 'NOT met'}")
        print(f"(written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out})")


if __name__ == "__main__":
    main()
