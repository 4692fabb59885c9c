"""Benchmark of automatic abstraction (pruning curve) and drawing order (prefix quality).

    python bench/abstraction.py                     # both losses, writes bench/results/abstraction_cpu.json
    python bench/abstraction.py --loss trace --pictures   # also docs/auto_abstraction.png, docs/drawing_order.png

What is measured, on the bundled example (Chelsea the cat, matted with u2netp when its weights are
there), per loss:
- clip: the CLIPasso loss with the tiny randomly initialised test ResNet (tests/tiny_models.py) --
  no pretrained CLIP weights can be downloaded here, so absolute values mean nothing for real
  CLIP, only comparisons within a row do;
- trace: the weights-free image-space loss (`OptimizeConfig(loss="trace")`), when this checkout
  has it: 1.0 is an empty canvas, 0 the picture's XDoG line map.

1. A sketch of ``--strokes`` strokes is optimised, then pruned one stroke at a time down to one
   (`clipasso.abstraction.auto_abstract`, full curve, ``--prune-iterations`` re-optimisation steps
   after each removal): the loss and fidelity per stroke count, and the count chosen for several
   fidelity targets.
2. Baseline for the curve: sketches of a few sizes optimised from scratch with the same number of
   iterations, against the pruned sketch of the same size.
3. Drawing order of the full sketch: greedy (`clipasso.order.greedy_order`) against the optimiser's
   own stroke order and ``--random-orders`` random orders: loss after the first k strokes and the
   mean fidelity over all prefixes (1 = every prefix as good as the whole sketch).

Prints a table last and writes JSON to bench/results/abstraction_<device>.json.
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

FIDELITIES = (0.5, 0.8, 0.9, 0.95, 1.0)
PREFIX_KS = (1, 2, 4, 8, 16)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def prepare(canvas: int):
    from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target

    weights = Path(os.environ.get("U2NET_HOME", ROOT.parent / "shared" / "weights")) / "u2netp.onnx"
    matted = weights.is_file()
    target, mask = prepare_target(EXAMPLE_IMAGE, canvas, background_removal=matted,
                                  models_dir=str(weights.parent) if matted else None, allow_download=False)
    return target, mask, matted


def start_strokes(target, mask, n: int, seed: int):
    from clipasso.init import initialize_strokes
    from clipasso.xdog import xdog_edges

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # strokes start on the picture's lines (the XDoG ink map as the sampling map)
        return initialize_strokes(tuple(target.shape[-2:]), n, [seed], saliency=xdog_edges(target), mask=mask,
                                  use_edges=False)


def fidelity(loss, blank, full):
    return (blank - loss) / (blank - full)


def run_loss(mode: str, args, encoder, target, mask):
    from clipasso.abstraction import auto_abstract, masked_losses
    from clipasso.optimize import OptimizeConfig, optimize
    from clipasso.order import greedy_order, prefix_losses

    extra = {} if mode == "clip" else {"loss": "trace"}
    cfg = OptimizeConfig.from_preset("fast", iterations=args.iterations, lr=args.lr, **extra)
    enc = encoder if mode == "clip" else None
    out = {"loss": mode, "settings": {"strokes": args.strokes, "iterations": args.iterations, "lr": args.lr,
                                      "prune_iterations": args.prune_iterations, "preset": "fast"}}

    t0 = time.perf_counter()
    run = optimize(start_strokes(target, mask, args.strokes, args.seed), target, enc, cfg, device="cpu")
    sketch = run.strokes
    out["optimise_seconds"] = time.perf_counter() - t0
    log(f"[{mode}] optimised {args.strokes} strokes: loss {float(sketch.losses[0]):.4f} "
        f"({out['optimise_seconds']:.0f} s)")

    t0 = time.perf_counter()
    ab = auto_abstract(sketch, target, enc, 0.9, cfg, prune_iterations=args.prune_iterations, full_curve=True,
                       device="cpu", callback=lambda k, loss, s: log(f"[{mode}]   pruned to {k}: {loss:.4f}"))
    out["prune_seconds"] = time.perf_counter() - t0
    out["curve"] = [{"strokes": k, "loss": v, "fidelity": f} for k, v, f in zip(ab.counts, ab.losses, ab.fidelities)]
    out["blank_loss"], out["full_loss"] = ab.blank_loss, ab.full_loss
    out["chosen"] = {str(f): min(k for k, fd in zip(ab.counts, ab.fidelities) if fd >= f - 1e-9)
                     for f in FIDELITIES}
    increases = sum(b > a for a, b in zip(ab.losses, ab.losses[1:]))
    out["curve_increases"] = f"{increases}/{len(ab.losses) - 1}"

    scratch = {}
    for k in args.scratch:
        if k >= args.strokes:
            continue
        r = optimize(start_strokes(target, mask, k, args.seed), target, enc, cfg, device="cpu")
        scratch[k] = {"scratch_loss": float(r.strokes.losses[0]), "pruned_loss": ab.losses[ab.counts.index(k)]}
        log(f"[{mode}]   {k} strokes from scratch: {scratch[k]['scratch_loss']:.4f}, "
            f"pruned: {scratch[k]['pruned_loss']:.4f}")
    out["scratch_vs_pruned"] = scratch

    t0 = time.perf_counter()
    greedy = greedy_order(sketch, target, enc, cfg, device="cpu")
    out["order_seconds"] = time.perf_counter() - t0
    own = prefix_losses(sketch, None, target, enc, cfg, device="cpu")
    gen = torch.Generator().manual_seed(args.seed)
    rand = torch.stack([prefix_losses(sketch, torch.randperm(args.strokes, generator=gen).tolist(), target, enc,
                                      cfg, device="cpu") for _ in range(args.random_orders)])
    blank, full = float(greedy.prefix_losses[0]), float(greedy.prefix_losses[-1])

    def summary(curve):
        c = [float(v) for v in curve]
        return {"prefix_losses": c,
                "at": {str(k): c[k] for k in PREFIX_KS if k <= args.strokes},
                "mean_prefix_fidelity": sum(fidelity(v, blank, full) for v in c[1:]) / (len(c) - 1)}

    out["order"] = {"greedy": summary(greedy.prefix_losses), "optimizer": summary(own),
                    "random_mean": summary(rand.mean(0)),
                    "random_best_at_1": float(rand[:, 1].min()),
                    "greedy_order": greedy.order}
    log(f"[{mode}] drawing order: greedy mean prefix fidelity {out['order']['greedy']['mean_prefix_fidelity']:.3f}, "
        f"random {out['order']['random_mean']['mean_prefix_fidelity']:.3f} ({out['order_seconds']:.0f} s)")
    return out, ab, greedy, rand


def pictures(target, ab, greedy, rand_curves, mode: str, strokes: int, seed: int):
    """docs/auto_abstraction.png and docs/drawing_order.png."""
    from PIL import Image, ImageDraw, ImageFont

    from clipasso.images import to_pil
    from clipasso.order import drawing_frames, reorder
    from clipasso.plots import abstraction_chart, line_chart
    from clipasso.raster import render

    font = ImageFont.load_default()
    tile = 180

    def labelled(img, text):
        canvas = Image.new("RGB", (tile, tile + 18), "white")
        canvas.paste(img.resize((tile, tile), Image.LANCZOS), (0, 18))
        ImageDraw.Draw(canvas).text((tile / 2, 3), text, fill=(0, 0, 0), font=font, anchor="mt")
        return canvas

    # auto abstraction: the curve and the sketches at a few counts
    chart = abstraction_chart(ab, size=(5 * tile, 300))
    counts = sorted({ab.counts[0], ab.count, *[k for k in (2 * ab.count, ab.count // 2, 4) if k in ab.sketches]},
                    reverse=True)[:4]
    row = [labelled(to_pil(target), "picture")] + [
        labelled(to_pil(render(ab.sketches[k], size=(448, 448)).image[0]),
                 f"{k} strokes, fidelity {ab.fidelity_of(ab.losses[ab.counts.index(k)]):.2f}"
                 + (" (chosen)" if k == ab.count else "")) for k in counts]
    sheet = Image.new("RGB", (5 * tile, chart.height + tile + 18), "white")
    sheet.paste(chart, (0, 0))
    for i, im in enumerate(row):
        sheet.paste(im, (i * tile, chart.height))
    sheet.save(ROOT / "docs" / "auto_abstraction.png", optimize=True)

    # drawing order: frames of the greedy order against a random order, and the prefix curves
    ks = [k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if k <= strokes]
    ks = ks[:7] if ks[-1] == strokes else ks[:6] + [strokes]
    greedy_frames = drawing_frames(greedy.strokes, size=(448, 448))
    perm = torch.randperm(strokes, generator=torch.Generator().manual_seed(seed)).tolist()
    random_frames = drawing_frames(reorder(greedy.strokes.select(0), perm), size=(448, 448))
    n = len(ks)
    sheet = Image.new("RGB", (n * tile + 90, 2 * (tile + 18) + 300), "white")
    d = ImageDraw.Draw(sheet)
    for r, (name, frames) in enumerate((("greedy", greedy_frames), ("random", random_frames))):
        d.text((6, r * (tile + 18) + tile / 2), f"{name}\norder", fill=(0, 0, 0), font=font)
        for i, k in enumerate(ks):
            sheet.paste(labelled(to_pil(frames[k]), f"first {k}"), (90 + i * tile, r * (tile + 18)))
    xs = list(range(strokes + 1))
    series = [("greedy order", xs, [float(v) for v in greedy.prefix_losses]),
              ("random orders (mean)", xs, [float(v) for v in rand_curves.mean(0)])]
    chart = line_chart(series, title=f"loss of the first k strokes ({mode} loss)", xlabel="strokes drawn",
                       ylabel="eval loss", size=(n * tile + 90, 300))
    sheet.paste(chart, (0, 2 * (tile + 18)))
    sheet.save(ROOT / "docs" / "drawing_order.png", optimize=True)
    log("wrote docs/auto_abstraction.png and docs/drawing_order.png")


def table(results) -> str:
    lines = []
    for r in results:
        m = r["loss"]
        lines.append(f"\n== {m} loss: {r['settings']['strokes']} strokes, {r['settings']['iterations']} iterations, "
                     f"{r['settings']['prune_iterations']} re-optimisation steps per removal ==")
        lines.append(f"pruning curve (empty canvas {r['blank_loss']:.4f}; loss rose on "
                     f"{r['curve_increases']} removals)")
        lines.append("strokes  loss     fidelity")
        for c in r["curve"]:
            lines.append(f"{c['strokes']:7d}  {c['loss']:.4f}  {c['fidelity']:8.3f}")
        lines.append("fidelity target -> strokes chosen: " + ", ".join(f"{f} -> {k}" for f, k in r["chosen"].items()))
        if r["scratch_vs_pruned"]:
            lines.append("strokes  optimised from scratch  pruned from the full sketch")
            for k, v in sorted(r["scratch_vs_pruned"].items(), key=lambda kv: int(kv[0])):
                lines.append(f"{int(k):7d}  {v['scratch_loss']:22.4f}  {v['pruned_loss']:.4f}")
        o = r["order"]
        ks = list(o["greedy"]["at"])
        lines.append("drawing order: loss after the first k strokes")
        lines.append("order        " + "  ".join(f"k={k:>3}" for k in ks) + "  mean prefix fidelity")
        for name in ("greedy", "optimizer", "random_mean"):
            lines.append(f"{name:11s}  " + "  ".join(f"{o[name]['at'][k]:.3f}" for k in ks)
                         + f"  {o[name]['mean_prefix_fidelity']:.3f}")
        lines.append(f"time: optimise {r['optimise_seconds']:.0f} s, prune {r['prune_seconds']:.0f} s, "
                     f"order {r['order_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", choices=["clip", "trace", "both"], default="both")
    ap.add_argument("--strokes", type=int, default=24)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--prune-iterations", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--scratch", type=int, nargs="*", default=[4, 8, 12])
    ap.add_argument("--random-orders", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--canvas", type=int, default=224)
    ap.add_argument("--pictures", action="store_true", help="write docs/ pictures from the last loss run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "abstraction_cpu.json"))
    ap.add_argument("--table-only", action="store_true", help="print the table of an existing --out file")
    args = ap.parse_args(argv)
    if args.table_only:
        print(table(json.loads(Path(args.out).read_text())["results"]))
        return 0

    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from clipasso.models import load_clip
    from clipasso.optimize import OptimizeConfig
    from tests.tiny_models import TINY_RN, write_tiny_models

    modes = ["clip", "trace"] if args.loss == "both" else [args.loss]
    if "trace" in modes and "loss" not in {f.name for f in __import__("dataclasses").fields(OptimizeConfig)}:
        log("this checkout has no trace loss; measuring the CLIP loss only")
        modes = [m for m in modes if m != "trace"] or ["clip"]
    target, mask, matted = prepare(args.canvas)
    encoder = None
    with tempfile.TemporaryDirectory() as tmp:
        if "clip" in modes:
            write_tiny_models(tmp)
            encoder = load_clip(TINY_RN, models_dir=tmp, allow_download=False)
        results = []
        last = None
        for m in modes:
            res, ab, greedy, rand = run_loss(m, args, encoder, target, mask)
            results.append(res)
            last = (ab, greedy, rand, m)
    if args.pictures and last is not None:
        pictures(target, last[0], last[1], last[2], last[3], args.strokes, args.seed)
    payload = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "torch": torch.__version__, "threads": torch.get_num_threads()},
               "picture": "clipasso/data/example.jpg" + (" (matted with u2netp)" if matted else " (not matted)"),
               "clip_encoder": "tiny random ResNet (tests/tiny_models.py)" if "clip" in modes else None,
               "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
