"""Cost per iteration of the features beyond the paper, against the plain CLIPasso step.

    python bench/features.py                      # CPU, RN101-size random encoder, fast preset
    python bench/features.py --measure 20 --rounds 3 --device cuda

Each configuration optimises the same 16 strokes x 2 seeds (the `fast` preset: 2 augmented views
from a cached pool of 16) on the bundled example with a real-size RN101 (open_clip's config, RANDOM
weights: the cost of a step does not depend on the weight values, and pretrained weights cannot be
downloaded here). Configurations are interleaved over several rounds, so a load change on a
shared machine hits them all alike; a row reports the fastest round's median step time (the first
step of a round is warm-up and holds the iteration-0 evaluation), its ratio to the plain step,
and the setup before the first step (encoding the prompt for text guidance, the target pool).

    plain        CLIPasso: control points only, black 3 px strokes, 224 canvas
    text         + text guidance (prompt embedding, one more cosine per view)
    width+opac.  + per-stroke width and opacity optimised (two more Adam parameter groups)
    colour       + colours from the picture, optimised (strokes of different colours take the
                   rasterizer's per-colour compositing path)
    all styled   text + width + opacity + colour
    canvas 448   plain on a 448 canvas, box-downsampled to 224 for the loss

What a feature adds lies outside the encoder (the views and the forward/backward passes are the
same), so a second measure times only that part -- render (differentiable in what the feature
optimises), downsample, text cosine, backward -- as the fastest of many interleaved repetitions,
which stays reliable on a busy shared CPU where whole steps of seconds do not.
``--measure 0 --glue-only`` refreshes that column alone and keeps the JSON's step columns.

Prints a table last and writes JSON to bench/results/features_<device>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROMPT = "a drawing of a cat, side view"
CONFIGS = {
    "plain": dict(),
    "text": dict(text=PROMPT, text_weight=0.1),
    "width+opacity": dict(optimize_width=True, optimize_opacity=True),
    "colour": dict(color_from_image=True, optimize_color=True),
    "all styled": dict(
        text=PROMPT,
        text_weight=0.1,
        optimize_width=True,
        optimize_opacity=True,
        color_from_image=True,
        optimize_color=True,
    ),
    "canvas 448": dict(canvas=448),
}


def _bench_sketch():
    """bench/sketch.py's random encoder and step timer (one timing method for all benchmarks)."""
    spec = importlib.util.spec_from_file_location("bench_sketch", Path(__file__).with_name("sketch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(args) -> list:
    import torch

    from clipasso.place.init import initialize_strokes
    from clipasso.optimize import OptimizeConfig
    from clipasso.settings import PRESETS
    from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target

    bs = _bench_sketch()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    enc = bs.random_encoder(args.model, device)
    preset = PRESETS["fast"]
    seeds = [1000 * i for i in range(args.seeds)]
    cases = {}
    for name, settings in CONFIGS.items():
        settings = dict(settings)
        canvas = settings.pop("canvas", 224)
        target, _ = prepare_target(EXAMPLE_IMAGE, canvas=canvas, background_removal=False)
        strokes = initialize_strokes((canvas, canvas), preset["strokes"], seeds, width=1.5 * canvas / 224)
        cfg = OptimizeConfig.from_preset(
            "fast", iterations=args.measure, callback_interval=1, aug_pool=args.aug_pool, **settings
        )
        cases[name] = (strokes, target, cfg, canvas)
    runs = {name: [] for name in cases}
    for r in range(args.rounds):
        for name, (strokes, target, cfg, _canvas) in cases.items():
            print(f"round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            t = bs.time_optimize(strokes, target, enc, cfg, device)
            runs[name].append(dict(median=t["median"], fastest=t["fastest"], cpu=t["cpu_per_it"], setup=t["setup"]))
    rows = []
    for name, rs in runs.items():
        best = min(rs, key=lambda x: x["median"])
        rows.append(
            dict(
                config=name,
                settings={k: v for k, v in CONFIGS[name].items()},
                canvas=cases[name][3],
                s_per_iteration=best["median"],
                fastest_step_s=best["fastest"],
                cpu_s_per_iteration=best["cpu"],
                setup_s=statistics.median(x["setup"] for x in rs),
                rounds=[x["median"] for x in rs],
            )
        )
    plain = next(r for r in rows if r["config"] == "plain")["s_per_iteration"]
    for r in rows:
        r["ratio_to_plain"] = r["s_per_iteration"] / plain
    return rows


def glue_cost(args) -> dict:
    """Milliseconds per step of everything a feature adds outside the encoder, without the encoder.

    Render the 2 seeds x 16 strokes (differentiable in the points and in whatever the feature
    optimises), downsample a larger canvas to 224, add the text cosine over the 1 + 2 views, and
    backpropagate a stand-in scalar. The fastest of ``args.glue_reps`` repetitions is kept: small
    work like this can be timed reliably even on a busy machine, where whole encoder steps cannot.
    """
    import time

    import torch
    import torch.nn.functional as F

    from clipasso.place.init import initialize_strokes
    from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target
    from clipasso.render.raster import rasterize
    from clipasso.optimize.style import StyleState, colors_from_image

    cases = {}
    views = 3 * args.seeds
    for name, settings in CONFIGS.items():
        canvas = settings.get("canvas", 224)
        target, _ = prepare_target(EXAMPLE_IMAGE, canvas=canvas, background_removal=False)
        strokes = initialize_strokes(
            (canvas, canvas), 16, [1000 * i for i in range(args.seeds)], width=1.5 * canvas / 224
        )
        if settings.get("color_from_image"):
            strokes = colors_from_image(strokes, target)
        style = StyleState(
            strokes.widths,
            strokes.colors,
            optimize_width=settings.get("optimize_width", False),
            optimize_opacity=settings.get("optimize_opacity", False),
            optimize_color=settings.get("optimize_color", False),
        )
        pts = strokes.points.clone().requires_grad_(True)
        emb = torch.randn(views, 512, requires_grad=True)  # stands in for the image embeddings (RN101: 512)
        text = torch.randn(1, 512)

        def step(pts=pts, style=style, emb=emb, text=text, canvas=canvas, settings=settings):
            img = rasterize(pts, style.widths, style.colors(), canvas, canvas)[0]
            if canvas > 224:
                img = F.interpolate(img, size=(224, 224), mode="area")
            loss = img.mean()
            if settings.get("text"):
                loss = loss + (1 - F.cosine_similarity(emb, text, dim=-1)).mean()
            loss.backward()
            pts.grad = None

        step()
        cases[name] = step
    # interleaved rounds, so that a busy spell on a shared machine does not land on one configuration
    best = {name: float("inf") for name in cases}
    rounds = 6
    for _ in range(rounds):
        for name, step in cases.items():
            for _ in range(max(1, args.glue_reps // rounds)):
                t0 = time.perf_counter()
                step()
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: 1000 * t for name, t in best.items()}


def table(rows, device, model) -> str:
    lines = [
        f"features, {model} (random weights), fast preset: 16 strokes x 2 seeds, 2 views/step, on {device}",
        "raster+glue: fastest of many steps without the encoder (ms); extra: minus plain's;",
        "step: whole optimiser step with the encoder (s, median of the fastest round; on a shared CPU",
        "this column carries the other jobs' load and is only indicative)",
        f"{'config':<15} {'raster+glue ms':>15} {'extra ms':>9} {'step s':>8} {'cpu s':>7} {'setup s':>8}",
        "-" * 67,
    ]
    for r in rows:
        g, e = r.get("glue_ms", float("nan")), r.get("glue_extra_ms", float("nan"))
        step = r.get("s_per_iteration", float("nan"))
        lines.append(
            f"{r['config']:<15} {g:15.1f} {e:9.1f} {step:8.3f} {r.get('cpu_s_per_iteration', float('nan')):7.3f} "
            f"{r.get('setup_s', float('nan')):8.2f}"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="RN101")
    ap.add_argument(
        "--measure",
        type=int,
        default=6,
        help="iterations timed per configuration and round (0: the encoder-free part only)",
    )
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest round counts")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--glue-reps", type=int, default=60, help="repetitions of the encoder-free part")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--aug-pool",
        type=int,
        default=16,
        help="size of the fast preset's cached view pool; it only changes the setup, not the step",
    )
    ap.add_argument("--out", help="JSON path (default bench/results/features_<device>.json)")
    ap.add_argument(
        "--glue-only",
        action="store_true",
        help="with --measure 0: re-measure only the encoder-free part, keeping the JSON's step columns",
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    glue = glue_cost(args)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"features_{args.device.split(':')[0]}.json"
    if args.measure > 0:
        rows = measure(args)
    elif args.glue_only and out.is_file():  # refresh the encoder-free column, keep the measured steps
        rows = json.loads(out.read_text())["rows"]
    else:
        rows = [dict(config=name) for name in CONFIGS]
    for r in rows:
        r["glue_ms"] = glue[r["config"]]
        r["glue_extra_ms"] = glue[r["config"]] - glue["plain"]
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.measure == 0 and args.glue_only and out.is_file():
        info = dict(json.loads(out.read_text()), rows=rows)
    else:
        info = dict(
            device=args.device,
            model=args.model,
            weights="random",
            preset="fast",
            aug_pool=args.aug_pool,
            seeds=args.seeds,
            measured_iterations=args.measure,
            rounds=args.rounds,
            threads=args.threads,
            machine=platform.processor() or platform.machine(),
            rows=rows,
        )
    info["glue_reps"] = args.glue_reps
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(table(rows, args.device, args.model))


if __name__ == "__main__":
    main()
