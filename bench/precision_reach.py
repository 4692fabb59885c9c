"""Does bf16 on the CPU reach the same loss as fp32? Whole optimisations, not one gradient.

    python bench/precision_reach.py                        # 3 photos x 2 seeds x 200 steps, ~25 min on 2 cores
    python bench/precision_reach.py --pictures 2 --iterations 100
    python bench/precision_reach.py --table-only
    python bench/precision_reach.py --noise-floor          # + fp32 again, each seed alone: the rounding noise floor

bench/studies/precision.py compares one gradient (bf16 keeps a cosine of 0.990-0.996 with fp32 on RN101);
this script asks what matters to a user: run the optimiser of the `fast` preset (2 augmented views
from a pool of 16, lr 1) for ``--iterations`` steps with ``mixed_precision="fp32"`` (fp32) and
``"bf16"``, from the same starting strokes and views, and compare the best loss reached. Both are
measured by the engine's eval loss, which is fp32 in both runs (`clipasso.objective.eval_amp_dtype`),
so the numbers are directly comparable.

Encoder: open_clip RN101 with random weights and BatchNorm statistics calibrated on real photos
(`bench.rn101.build_rn101`): an uncalibrated random RN101 maps every picture to nearly the same
features, its loss is ~0 and a comparison could not fail. Pictures: skimage photos, 224 px.
Starting strokes: 16 strokes from the picture's XDoG ink map, one set per seed.

Reported per picture and seed: the start loss, the best loss reached in fp32 and in bf16, their
relative difference, and seconds per step of each; the summary gives the largest difference, the mean
difference and whether best-of-N would pick the same seed. The acceptance rule of the CPU default
(issue 14): every bf16 run within 2% of its fp32 run. Writes bench/results/precision_reach_cpu.json.
On a GPU (bench/gpu_check.sh): ``--device cuda --mode fp16`` and ``--mode bf16`` compare CUDA's
autocast dtypes the same way (precision_reach_cuda_fp16.json, precision_reach_cuda.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.rn101 import PICTURES, build_rn101, picture  # noqa: E402

THRESHOLD = 0.02  # largest accepted relative difference of the loss reached


def encoder(quick: bool, device, pictures: int):
    """The tiny test ResNet (``quick``: checks the script, not the numbers), else the calibrated RN101."""
    if quick:
        import tempfile

        from clipasso.models import load_clip
        from clipasso.testing.tiny_models import TINY_RN, write_tiny_models

        folder = write_tiny_models(tempfile.mkdtemp(prefix="clipasso_reach_"))["folder"]
        return load_clip(TINY_RN, models_dir=folder, device=device, allow_download=False)
    from clipasso.models import wrap_model

    enc = build_rn101([picture(n) for n in PICTURES[: max(pictures, 6)]], seed=0)
    return wrap_model(enc.model, "RN101", source=enc.source, device=device)


def run(args) -> dict:
    from clipasso.device import cpu_bf16_native
    from clipasso.optimize import OptimizeConfig, optimize
    from clipasso.place.init import initialize_strokes
    from clipasso.prepare.xdog import xdog_edges

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = PICTURES[: args.pictures]
    t0 = time.perf_counter()
    enc = encoder(args.quick, device, len(names))
    print(f"encoder ready in {time.perf_counter() - t0:.0f}s", flush=True)
    seeds = [args.seed + 1000 * k for k in range(args.seeds)]
    low = args.mode
    rows = []
    for name in names:
        target = picture(name)
        start = initialize_strokes((224, 224), 16, seeds, edges=xdog_edges(target).float())
        runs = {}
        for label, mode in (("fp32", "off"), (low, low)):
            cfg = OptimizeConfig.from_preset(
                "fast", iterations=args.iterations, mixed_precision=mode, seed_trial=0.0, plateau=0.0
            )
            res = optimize(start, target, enc, cfg, seeds=seeds, device=device)
            runs[label] = res
            print(
                f"  {name} {label}: best {[round(float(v), 4) for v in res.strokes.losses]}, "
                f"{res.seconds_per_iteration:.3f} s/step",
                flush=True,
            )
        f32, b16 = runs["fp32"], runs[low]
        for k, seed in enumerate(seeds):
            a, b = float(f32.strokes.losses[k]), float(b16.strokes.losses[k])
            rows.append(
                dict(
                    picture=name,
                    seed=seed,
                    start=float(f32.history[0, k]),
                    fp32=a,
                    low=b,
                    rel=(b - a) / a,
                    s_per_step_fp32=f32.seconds_per_iteration,
                    s_per_step_low=b16.seconds_per_iteration,
                )
            )
        rows[-1]["same_winner"] = int(torch.argmin(f32.strokes.losses)) == int(torch.argmin(b16.strokes.losses))
    rels = [abs(r["rel"]) for r in rows]
    winners = [r["same_winner"] for r in rows if "same_winner" in r]
    f32s = sum(r["s_per_step_fp32"] for r in rows) / len(rows)
    b16s = sum(r["s_per_step_low"] for r in rows) / len(rows)
    summary = dict(
        max_abs_rel=max(rels),
        mean_rel=sum(r["rel"] for r in rows) / len(rows),
        mean_abs_rel=sum(rels) / len(rels),
        same_winner=sum(winners),
        pictures=len(winners),
        speedup=f32s / b16s,
        within_threshold=max(rels) <= THRESHOLD,
    )
    dev_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    )
    return dict(
        settings=dict(
            pictures=list(names),
            seeds=seeds,
            iterations=args.iterations,
            preset="fast",
            strokes=16,
            threads=args.threads,
            threshold=THRESHOLD,
            torch=torch.__version__,
            device=device.type,
            device_name=dev_name,
            mode=low,
            quick=args.quick,
            encoder=("tiny test ResNet" if args.quick else "RN101 (random, BatchNorm calibrated)"),
            cpu_bf16_native=cpu_bf16_native(),
        ),
        rows=rows,
        summary=summary,
    )


def noise_floor(args, data: dict) -> dict:
    """What float rounding alone does to the loss reached: every seed of the saved run optimised again in
    fp32, alone (a batch of one instead of two), from the same start and views. The per-candidate maths is
    the same, only the rounding differs; the trajectories drift apart like the bf16 ones do, so this is
    the yardstick for the bf16 differences."""
    from clipasso.optimize import OptimizeConfig, optimize
    from clipasso.place.init import initialize_strokes
    from clipasso.prepare.xdog import xdog_edges

    torch.set_num_threads(args.threads)
    st = data["settings"]
    device = torch.device(st.get("device", "cpu"))
    enc = encoder(st.get("quick", False), device, len(st["pictures"]))
    seeds = st["seeds"]
    for name in st["pictures"]:
        target = picture(name)
        start = initialize_strokes((224, 224), 16, seeds, edges=xdog_edges(target).float())
        cfg = OptimizeConfig.from_preset(
            "fast", iterations=st["iterations"], mixed_precision="fp32", seed_trial=0.0, plateau=0.0
        )
        for k, seed in enumerate(seeds):
            res = optimize(start.select([k]), target, enc, cfg, seeds=[seed], device=device)
            row = next(r for r in data["rows"] if r["picture"] == name and r["seed"] == seed)
            row["fp32_alone"] = float(res.strokes.losses[0])
            row["rel_alone"] = row["fp32_alone"] / row["fp32"] - 1
            print(
                f"  {name} seed {seed} fp32 alone: {row['fp32_alone']:.4f} ({100 * row['rel_alone']:+.2f}%)", flush=True
            )
    rels = [abs(r["rel_alone"]) for r in data["rows"]]
    data["summary"]["noise_max_abs_rel"] = max(rels)
    data["summary"]["noise_mean_abs_rel"] = sum(rels) / len(rels)
    return data


def table(data: dict) -> str:
    st = data["settings"]
    low = st.get("mode", "bf16")
    where = f"on {st.get('device_name', 'the CPU')}" + (
        f" (native bf16: {st['cpu_bf16_native']})" if st.get("device", "cpu") == "cpu" else ""
    )
    out = [
        f"{low} vs fp32 {where}: best loss reached after {st['iterations']} steps of the fast preset's optimiser, "
        f"{st.get('encoder', 'RN101 (random, BatchNorm calibrated)')}, {st['strokes']} strokes; loss measured in "
        f"fp32 for both",
        f"{'picture':12s} {'seed':>5s} {'start':>8s} {'fp32':>8s} {low:>8s} {low + ' vs fp32':>13s} "
        f"{'fp32 alone':>11s} {'alone vs fp32':>14s} {'s/step fp32':>12s} {'s/step ' + low:>12s}",
    ]
    for r in data["rows"]:
        alone = (
            f"{r['fp32_alone']:11.4f} {100 * r['rel_alone']:+13.2f}%" if "fp32_alone" in r else f"{'-':>11s} {'-':>14s}"
        )
        out.append(
            f"{r['picture']:12s} {r['seed']:>5d} {r['start']:8.4f} {r['fp32']:8.4f} {r['low']:8.4f} "
            f"{100 * r['rel']:+12.2f}% {alone} {r['s_per_step_fp32']:12.3f} {r['s_per_step_low']:12.3f}"
        )
    s = data["summary"]
    if st.get("timing_note"):
        out.append(f"note: {st['timing_note']}")
    if "noise_max_abs_rel" in s:
        out.append(
            f"float rounding alone (fp32, each seed alone instead of in a batch of {len(st['seeds'])}): largest "
            f"difference {100 * s['noise_max_abs_rel']:.2f}%, mean absolute {100 * s['noise_mean_abs_rel']:.2f}%"
        )
    out.append(
        f"largest difference {100 * s['max_abs_rel']:.2f}% (mean {100 * s['mean_rel']:+.2f}%, mean absolute "
        f"{100 * s['mean_abs_rel']:.2f}%); best-of-{len(st['seeds'])} picked the same seed on "
        f"{s['same_winner']} of {s['pictures']} pictures; {low} step {s['speedup']:.2f}x faster; "
        f"{'within' if s['within_threshold'] else 'OUTSIDE'} the {100 * st['threshold']:.0f}% rule"
    )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pictures", type=int, default=3, help=f"how many photos (1..{len(PICTURES)})")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--mode",
        default="bf16",
        choices=["bf16", "fp16"],
        help="the reduced precision to compare (fp16 only means something on CUDA)",
    )
    p.add_argument("--quick", action="store_true", help="the tiny test ResNet: checks the script, not the numbers")
    p.add_argument(
        "--out", default=None, help="JSON file (default bench/results/precision_reach_<device>[_<mode>].json)"
    )
    p.add_argument("--table-only", action="store_true")
    p.add_argument(
        "--noise-floor",
        action="store_true",
        help="add to the saved run what float rounding alone does: "
        "each seed again in fp32, alone (~15 min for the default run)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        suffix = "" if args.mode == "bf16" else f"_{args.mode}"
        args.out = os.path.join(ROOT, "bench", "results", f"precision_reach_{args.device}{suffix}.json")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this torch sees no CUDA GPU")
    if args.table_only:
        with open(args.out) as f:
            print(table(json.load(f)))
        return 0
    if args.noise_floor:
        with open(args.out) as f:
            data = noise_floor(args, json.load(f))
        with open(args.out, "w") as f:
            json.dump(data, f, indent=2)
        print(table(data))
        return 0
    data = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=2)
    print(table(data))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
