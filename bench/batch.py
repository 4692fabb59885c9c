"""Benchmark of `clipasso batch` (`clipasso.batch.sketch_many`): images per hour, and the cost per image
for 1, 10 and 50 images (flat is the goal: the models load once), on the local engine and on a local
Ray with 2 CPU workers.

    python bench/batch.py                    # the whole table (about 10 minutes on a 2-core CPU)
    python bench/batch.py --counts 1 10      # fewer sizes

Pictures: scikit-image's sample photos (chelsea, coffee, astronaut, rocket, horse, ...) cycled to the
batch size, each a separate file. Settings: the weights-free trace loss (no CLIP weights exist here)
with the fast preset's stroke count and seeds and ``--iterations`` steps (default 60, to keep the table
minutes long). Images per hour at the preset's own 500 steps are extrapolated from two runs (the cost
per image is fixed + steps x per-step cost). The `fast` preset with the CLIP loss is limited by the
RN101 step, measured by bench/sketch.py (bench/results/sketch_cpu.json): its images per hour follow
from that per-step time. Each run starts in a fresh process (models and Ray loaded in the measured
time). Prints a table last and writes bench/results/batch_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import RESULTS, machine, markdown_table, write_results  # noqa: E402

SAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "horse", "cat", "camera", "moon")


def write_pictures(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = SAMPLES[i % len(SAMPLES)]
        img = np.asarray(getattr(data, name)())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        Image.fromarray(img).convert("RGB").save(folder / f"{i:03d}_{name}.png")


RUN = """
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(2)
from clipasso.batch import sketch_many
from clipasso.settings import SketchSettings
s = SketchSettings.from_preset("fast", loss="trace", saliency="mask", iterations={iterations}, device="cpu",
                               allow_download=False)
r = sketch_many([{folder!r}], {out!r}, s, engine={engine!r}, workers=2 if {engine!r} == "ray" else None)
print("RESULT", json.dumps(dict(seconds=time.perf_counter() - t0, ok=r.count("ok"), failed=r.failed,
                                per_picture=[l["seconds"] for l in r.lines])))
"""


def run(folder: Path, out: Path, engine: str, iterations: int) -> dict:
    code = RUN.format(folder=str(folder), out=str(out), engine=engine, iterations=iterations)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(line[0][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--engines", nargs="+", default=["local", "ray"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for count in args.counts:
            pictures = tmp / f"in{count}"
            write_pictures(pictures, count)
            for engine in args.engines:
                got = run(pictures, tmp / f"out_{engine}_{count}", engine, args.iterations)
                rows.append(
                    dict(
                        engine=engine,
                        images=count,
                        iterations=args.iterations,
                        **got,
                        seconds_per_image=got["seconds"] / count,
                    )
                )
                print(
                    f"{engine:5s} {count:3d} images x {args.iterations} steps: {got['seconds']:.1f} s, "
                    f"{got['seconds'] / count:.2f} s/image",
                    flush=True,
                )
        # the per-step cost, for images per hour at the preset's 500 steps: 10 images at 3x the steps
        slope_count = min(10, max(args.counts))
        longer = run(
            tmp / f"in{slope_count}" if (tmp / f"in{slope_count}").exists() else pictures,
            tmp / "out_slope",
            "local",
            3 * args.iterations,
        )
        base = next(r for r in rows if r["engine"] == "local" and r["images"] == slope_count)
        per_step = (longer["seconds"] - base["seconds"]) / slope_count / (2 * args.iterations)
        fixed = base["seconds_per_image"] - per_step * args.iterations
    sketch_json = RESULTS / "sketch_cpu.json"
    rn101 = None
    if sketch_json.exists():
        speed = json.loads(sketch_json.read_text())["speed"]
        fast = [r for r in speed if r["preset"] == "fast" and r["seeds"] == 2]
        rn101 = fast[0]["seconds_per_iteration"] if fast else None
    trace_500 = fixed + 500 * per_step
    info = machine()
    summary = dict(
        trace_fixed_s_per_image=fixed,
        trace_s_per_step=per_step,
        trace_fast_500_s_per_image=trace_500,
        trace_fast_images_per_hour=3600 / trace_500,
        clip_fast_s_per_step_rn101=rn101,
        clip_fast_images_per_hour=(3600 / (fixed + 500 * rn101)) if rn101 else None,
    )
    out = write_results(RESULTS / "batch_cpu.json", dict(info=info, rows=rows, summary=summary), info)
    print()
    print(
        markdown_table(
            ["engine", "images", "steps", "total s", "s/image"],
            [
                (r["engine"], r["images"], r["iterations"], f"{r['seconds']:.1f}", f"{r['seconds_per_image']:.2f}")
                for r in rows
            ],
        )
    )
    print(
        f"\ntrace loss, fast preset (16 strokes, best of 2): {fixed:.2f} s fixed + {per_step * 1000:.1f} ms/step per "
        f"image -> {trace_500:.1f} s per image at 500 steps = {3600 / trace_500:.0f} images/hour"
    )
    if rn101:
        print(
            f"CLIP loss, fast preset: {rn101:.2f} s/step (RN101, bench/sketch.py) -> "
            f"{3600 / (fixed + 500 * rn101):.1f} images/hour"
        )
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
