"""Sketch quality that needs no pretrained weights: geometric fidelity before and after optimisation.

For each picture the same initial strokes (object-mask saliency + XDoG ink rule, as the pipeline
does with ``--saliency mask``) are optimised with each loss, and the sketch's ink is scored against
the target's edges (`clipasso.report.metrics`): precision / recall / F within 3 px at 224, and coverage
(share of the object mask within 8 px of ink). Edges = Canny (sigma 2) of the target joined with
the object mask's outline.

Losses: ``trace`` (the weights-free image-space loss, `clipasso.objective.losses.TraceLoss`), ``clip`` with a
tiny randomly initialised CLIP ResNet (clipasso/testing/tiny_models.py), ``clip+trace`` (same tiny model), and
with ``--rn101`` also ``clip-rn101``: the real-size RN101 architecture with random weights (BatchNorm
recalibrated on random images as for the tiny models). Random CLIP weights give only a weak signal;
the trace loss is the control that shows what the renderer and optimiser reach without CLIP.

Pictures: scikit-image's horse silhouette (its own mask) and photos (chelsea, coffee, astronaut)
matted with u2netp ($U2NET_HOME, else the copy bundled in clipasso/data). Nothing is downloaded.

    python bench/quality.py                         # fast preset cut to 150 iterations, 2 seeds: about 5 min
                                                    # of CPU time on 2 cores (34 min wall here, sharing the CPU)
    python bench/quality.py --iterations 500        # the fast preset's full length
    python bench/quality.py --rn101 --images horse  # add the random real-size RN101 (slow on CPU)
    python bench/quality.py --table-only            # print the table of the last run

Writes bench/results/quality_<device>.json and prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
PHOTOS = ("chelsea", "coffee", "astronaut")
ALL_IMAGES = ("horse",) + PHOTOS
ALL_LOSSES = ("trace", "clip", "clip+trace")
# trace without re-seeding strokes that shrink to dots (the optimiser's reseed_interval=0), for
# measuring what re-seeding does: `--losses trace trace-no-reseed`
EXTRA_LOSSES = ("trace-no-reseed",)


from bench.harness import u2net_folder  # noqa: E402,F401  ($U2NET_HOME, else the bundled clipasso/data)


def horse_rgba() -> np.ndarray:
    from skimage import data

    obj = ~data.horse()  # True on the horse
    rgba = np.zeros(obj.shape + (4,), np.uint8)
    rgba[..., :3] = np.where(obj[..., None], 0, 255)
    rgba[..., 3] = np.where(obj, 255, 0)
    return rgba


def load_picture(name: str, canvas: int = 224):
    """(target [3,S,S], mask [S,S], note) as the pipeline prepares them."""
    from skimage import data

    from clipasso.pipeline import prepare_target

    notes = []
    if name == "horse":
        target, mask = prepare_target(horse_rgba(), canvas=canvas, background_removal=False, notes=notes)
        return target, mask, "silhouette (its own mask)"
    folder = u2net_folder()
    if folder is None:
        raise FileNotFoundError("u2netp.onnx not found (set U2NET_HOME)")
    img = getattr(data, name)()
    target, mask = prepare_target(
        img, canvas=canvas, background_removal=True, models_dir=folder, allow_download=False, notes=notes
    )
    return target, mask, "u2netp matting" + (f" ({'; '.join(notes)})" if notes else "")


def initial_strokes(target, mask, strokes: int, seeds, canvas: int = 224):
    from clipasso.place.init import initialize_strokes
    from clipasso.place.saliency import saliency_map
    from clipasso.prepare.xdog import xdog_edges

    sal = saliency_map(target, method="mask", mask=mask) if mask is not None else None
    return initialize_strokes((canvas, canvas), strokes, list(seeds), saliency=sal, edges=xdog_edges(target), mask=mask)


def encoders(names, threads):
    """name -> ClipEncoder (or None for the trace loss)."""
    from clipasso.models import load_clip, wrap_model
    from clipasso.testing.tiny_models import TINY_RN, perturb_norms, write_tiny_models

    out = {}
    if any(n in ("clip", "clip+trace") for n in names):
        folder = write_tiny_models(tempfile.mkdtemp(prefix="clipasso_tiny_"))["folder"]
        out["tiny"] = load_clip(TINY_RN, models_dir=folder, allow_download=False)
    if "clip-rn101" in names:
        import open_clip

        torch.manual_seed(0)
        model = open_clip.create_model("RN101", pretrained=None)
        perturb_norms(model, 0)
        out["rn101"] = wrap_model(model, name="RN101", pretrained=None, source="random (BatchNorm recalibrated)")
    return out


def score(strokes, target, mask, edges):
    from clipasso.report.metrics import sketch_fidelity
    from clipasso.render.raster import render

    return sketch_fidelity(render(strokes).image, target, mask, edges=edges)


def balanced_trace_weight(init, target, encoder) -> float:
    """trace_weight that makes both terms equal at the start (mean over seeds): the CLIP loss of a random
    encoder has an arbitrary scale (about 20 for the tiny ResNet), the trace loss starts near 1."""
    from clipasso.objective.losses import CLIPassoLoss, TraceLoss
    from clipasso.render.raster import render

    img = render(init).image
    with torch.no_grad():
        c = CLIPassoLoss(encoder, target, num_augs=0).eval_loss(img)["total"].mean()
        t = TraceLoss(target).eval_loss(img)["total"].mean()
    return float(c / t.clamp(min=1e-6))


def mean(v):
    return float(sum(v) / len(v)) if v else float("nan")


def run(args) -> dict:
    from clipasso.report.metrics import edge_map
    from clipasso.optimize import OptimizeConfig, optimize

    torch.set_num_threads(args.threads)
    losses = list(args.losses) + (["clip-rn101"] if args.rn101 else [])
    encs = encoders(losses, args.threads)
    seeds = [args.seed + 1000 * i for i in range(args.seeds)]
    rows, pictures = [], {}
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t_start = time.perf_counter()
    for name in args.images:
        try:
            target, mask, how = load_picture(name)
        except Exception as exc:  # noqa: BLE001 - a missing matting model skips the photos, said plainly
            print(f"quality: skipping {name}: {exc}", file=sys.stderr)
            pictures[name] = {"skipped": str(exc)}
            continue
        edges = edge_map(target, mask, method="canny")
        init = initial_strokes(target, mask, args.strokes, seeds)
        s0 = score(init, target, mask, edges)
        pictures[name] = {
            "mask": how,
            "mask_share": float(mask.float().mean()) if mask is not None else None,
            "edge_pixels": int(edges.sum()),
            "initial": s0,
        }
        rows.append(
            dict(
                image=name,
                loss="initial",
                iterations=0,
                seconds_per_iteration=None,
                f=mean(s0["f"]),
                precision=mean(s0["precision"]),
                recall=mean(s0["recall"]),
                coverage=mean(s0.get("coverage", [])),
                f_winner=None,
                per_seed=s0,
            )
        )
        for loss in losses:
            enc = None
            mode = loss
            if loss in ("clip", "clip+trace"):
                enc = encs["tiny"]
            elif loss == "clip-rn101":
                enc, mode = encs["rn101"], "clip"
            if loss == "clip-rn101" and name not in args.rn101_images:
                continue
            its = args.rn101_iterations if loss == "clip-rn101" else args.iterations
            extra = {}
            if loss == "trace-no-reseed":
                mode, extra["reseed_interval"] = "trace", 0
            if loss == "clip+trace":
                extra["trace_weight"] = (
                    balanced_trace_weight(init, target, enc) if args.trace_weight is None else args.trace_weight
                )
            cfg = OptimizeConfig.from_preset("fast", iterations=its, loss=mode, **extra)
            print(f"quality: {name} / {loss}: {its} iterations x {len(seeds)} seeds ...", file=sys.stderr, flush=True)
            cpu0 = time.process_time()
            res = optimize(init, target, enc, cfg, device="cpu")
            cpu_it = (time.process_time() - cpu0) / max(1, res.iterations_run)
            s1 = score(res.strokes, target, mask, edges)
            win = int(torch.argmin(res.strokes.losses))
            rows.append(
                dict(
                    image=name,
                    loss=loss,
                    iterations=res.iterations_run,
                    seconds_per_iteration=res.seconds_per_iteration,
                    cpu_seconds_per_iteration=cpu_it,
                    f=mean(s1["f"]),
                    precision=mean(s1["precision"]),
                    recall=mean(s1["recall"]),
                    coverage=mean(s1.get("coverage", [])),
                    f_winner=s1["f"][win],
                    per_seed=s1,
                    loss_start=res.history[0].tolist(),
                    loss_best=res.strokes.losses.tolist(),
                    trace_weight=extra.get("trace_weight"),
                    reseeded=res.reseeded,
                    encoder=None
                    if enc is None
                    else f"{enc.name} ({enc.source if loss == 'clip-rn101' else 'tiny random'})",
                )
            )
    info = dict(
        device="cpu",
        threads=args.threads,
        cores=os.cpu_count(),
        torch=torch.__version__,
        platform=platform.platform(),
        cpu=platform.processor() or platform.machine(),
        preset="fast (2 augmentations from a pool of 16, lr 1.0)",
        iterations=args.iterations,
        rn101_iterations=args.rn101_iterations if args.rn101 else None,
        seeds=seeds,
        strokes=args.strokes,
        tolerance_px=3,
        cover_radius_px=8,
        metric_size=224,
        edges="Canny (sigma 2) + mask outline",
        init="mask saliency + XDoG ink rule (pipeline --saliency mask)",
        seconds_total=time.perf_counter() - t_start,
        load_average_start=load0,
        load_average_end=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        note="F, P, R, coverage: mean over seeds; F win: the seed with the lowest loss. s/it: wall "
        "seconds per iteration (all seeds together); CPU s/it: process CPU time per iteration (all "
        "threads), less sensitive to other work on the machine. Random CLIP weights (tiny or RN101) "
        "are not a quality claim about CLIPasso with real weights.",
    )
    return dict(info=info, pictures=pictures, rows=rows)


def table(report: dict) -> str:
    from clipasso.report import quality_markdown

    info = report["info"]
    lines = ["Sketch fidelity (weights-free): " + quality_markdown(report), "", info["note"]]
    weights = sorted({round(r["trace_weight"], 2) for r in report["rows"] if r.get("trace_weight")})
    if weights:
        lines.append(f"clip+trace: trace_weight balanced per picture so both terms start equal ({weights}).")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", nargs="+", default=list(ALL_IMAGES), choices=list(ALL_IMAGES))
    ap.add_argument("--losses", nargs="+", default=list(ALL_LOSSES), choices=list(ALL_LOSSES + EXTRA_LOSSES))
    ap.add_argument("--rn101", action="store_true", help="also the random real-size RN101 (slow on CPU)")
    ap.add_argument("--iterations", type=int, default=150, help="per run (fast preset: 500; default 150 for ~10 min)")
    ap.add_argument("--rn101-iterations", type=int, default=60)
    ap.add_argument("--rn101-images", nargs="+", default=["horse"], choices=list(ALL_IMAGES))
    ap.add_argument(
        "--trace-weight",
        type=float,
        default=None,
        help="trace weight of clip+trace (default: balanced so both terms start equal)",
    )
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strokes", type=int, default=16)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default=str(RESULTS / "quality_cpu.json"))
    ap.add_argument("--table-only", action="store_true", help="print the table of the saved results")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.table_only:
        print(table(json.loads(out.read_text())))
        return 0
    report = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
