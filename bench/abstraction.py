"""Benchmark of automatic abstraction (pruning curve) and drawing order (prefix quality).

    python bench/abstraction.py                     # both losses, writes bench/results/abstraction_cpu.json
    python bench/abstraction.py --loss trace --pictures   # also docs/auto_abstraction.png, docs/drawing_order.png
    python bench/abstraction.py --grow-picture --strokes 16 --iterations 80 --prune-iterations 5
                                                          # docs/grow_abstraction.png (section 4's runs)

What is measured, on the bundled example (Chelsea the cat, matted with u2netp when its weights are
there), per loss:
- clip: the CLIPasso loss with the tiny randomly initialised test ResNet (clipasso/testing/tiny_models.py) --
  no pretrained CLIP weights can be downloaded here, so absolute values mean nothing for real
  CLIP, only comparisons within a row do;
- trace: the weights-free image-space loss (`OptimizeConfig(loss="trace")`), when this checkout
  has it: 1.0 is an empty canvas, 0 the picture's XDoG line map.

1. A sketch of ``--strokes`` strokes is optimised, then pruned one stroke at a time down to one
   (`clipasso.post.abstraction.auto_abstract`, full curve, ``--prune-iterations`` re-optimisation steps
   after each removal): the loss and fidelity per stroke count, and the count chosen for several
   fidelity targets.
2. Baseline for the curve: sketches of a few sizes optimised from scratch with the same number of
   iterations, against the pruned sketch of the same size.
3. Drawing order of the full sketch: greedy (`clipasso.post.order.greedy_order`) against the optimiser's
   own stroke order and ``--random-orders`` random orders: loss after the first k strokes and the
   mean fidelity over all prefixes (1 = every prefix as good as the whole sketch).

4. ``--grow-vs-prune`` (trace loss only, merged into the JSON as "grow_vs_prune" without re-running
   1-3): pruning as in 1 (``--strokes`` strokes optimised for ``--iterations``, pruned to one) against
   growing (`clipasso.post.abstraction.grow_abstract`: ``--grow-start`` strokes optimised for ``--iterations``,
   then grown one stroke per stage to ``--strokes`` with ``--grow-iterations`` re-optimisation steps
   per stage): loss at equal stroke counts, wall and CPU time, and the
   count each method chooses for fidelity 0.9 (each relative to its own reference) and where growing's
   plateau rule (min_gain 0.01, patience 2) would have stopped.

5. ``--grow-picture`` (with or without ``--grow-vs-prune``; the runs of section 4, done once): writes
   grow_abstraction.png to ``--out-dir`` (default docs/): the picture and its XDoG line map (what the
   trace loss compares with), the grown sketch at the ``--grow-counts`` stroke counts with its newest
   stroke drawn in red, the pruned sketch at the same counts, and loss versus strokes of both. The
   JSON is only written when ``--grow-vs-prune`` is given too.

Prints a table last and writes JSON to bench/results/abstraction_<device>.json.
"""

from __future__ import annotations

import argparse
import json
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

    from bench.harness import u2net_folder

    folder = u2net_folder()
    weights = Path(folder or ".") / "u2netp.onnx"
    matted = folder is not None
    target, mask = prepare_target(
        EXAMPLE_IMAGE,
        canvas=canvas,
        background_removal=matted,
        models_dir=str(weights.parent) if matted else None,
        allow_download=False,
    )
    return target, mask, matted


def start_strokes(target, mask, n: int, seed: int):
    from clipasso.place.init import initialize_strokes
    from clipasso.prepare.xdog import xdog_edges

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # strokes start on the picture's lines (the XDoG ink map as the sampling map)
        return initialize_strokes(
            tuple(target.shape[-2:]), n, [seed], saliency=xdog_edges(target), mask=mask, use_edges=False
        )


def fidelity(loss, blank, full):
    return (blank - loss) / (blank - full)


def run_loss(mode: str, args, encoder, target, mask):
    from clipasso.post.abstraction import auto_abstract
    from clipasso.optimize import OptimizeConfig, optimize
    from clipasso.post.order import greedy_order, prefix_losses

    extra = {} if mode == "clip" else {"loss": "trace"}
    cfg = OptimizeConfig.from_preset("fast", iterations=args.iterations, lr=args.lr, **extra)
    enc = encoder if mode == "clip" else None
    out = {
        "loss": mode,
        "settings": {
            "strokes": args.strokes,
            "iterations": args.iterations,
            "lr": args.lr,
            "prune_iterations": args.prune_iterations,
            "preset": "fast",
        },
    }

    t0 = time.perf_counter()
    run = optimize(start_strokes(target, mask, args.strokes, args.seed), target, enc, cfg, device="cpu")
    sketch = run.strokes
    out["optimise_seconds"] = time.perf_counter() - t0
    log(
        f"[{mode}] optimised {args.strokes} strokes: loss {float(sketch.losses[0]):.4f} "
        f"({out['optimise_seconds']:.0f} s)"
    )

    t0 = time.perf_counter()
    ab = auto_abstract(
        sketch,
        target,
        enc,
        0.9,
        cfg,
        prune_iterations=args.prune_iterations,
        full_curve=True,
        device="cpu",
        callback=lambda k, loss, s: log(f"[{mode}]   pruned to {k}: {loss:.4f}"),
    )
    out["prune_seconds"] = time.perf_counter() - t0
    out["curve"] = [{"strokes": k, "loss": v, "fidelity": f} for k, v, f in zip(ab.counts, ab.losses, ab.fidelities)]
    out["blank_loss"], out["full_loss"] = ab.blank_loss, ab.full_loss
    out["chosen"] = {str(f): min(k for k, fd in zip(ab.counts, ab.fidelities) if fd >= f - 1e-9) for f in FIDELITIES}
    increases = sum(b > a for a, b in zip(ab.losses, ab.losses[1:]))
    out["curve_increases"] = f"{increases}/{len(ab.losses) - 1}"

    scratch = {}
    for k in args.scratch:
        if k >= args.strokes:
            continue
        r = optimize(start_strokes(target, mask, k, args.seed), target, enc, cfg, device="cpu")
        scratch[k] = {"scratch_loss": float(r.strokes.losses[0]), "pruned_loss": ab.losses[ab.counts.index(k)]}
        log(
            f"[{mode}]   {k} strokes from scratch: {scratch[k]['scratch_loss']:.4f}, "
            f"pruned: {scratch[k]['pruned_loss']:.4f}"
        )
    out["scratch_vs_pruned"] = scratch

    t0 = time.perf_counter()
    greedy = greedy_order(sketch, target, enc, cfg, device="cpu")
    out["order_seconds"] = time.perf_counter() - t0
    own = prefix_losses(sketch, None, target, enc, cfg, device="cpu")
    gen = torch.Generator().manual_seed(args.seed)
    rand = torch.stack(
        [
            prefix_losses(sketch, torch.randperm(args.strokes, generator=gen).tolist(), target, enc, cfg, device="cpu")
            for _ in range(args.random_orders)
        ]
    )
    blank, full = float(greedy.prefix_losses[0]), float(greedy.prefix_losses[-1])

    def summary(curve):
        c = [float(v) for v in curve]
        return {
            "prefix_losses": c,
            "at": {str(k): c[k] for k in PREFIX_KS if k <= args.strokes},
            "mean_prefix_fidelity": sum(fidelity(v, blank, full) for v in c[1:]) / (len(c) - 1),
        }

    out["order"] = {
        "greedy": summary(greedy.prefix_losses),
        "optimizer": summary(own),
        "random_mean": summary(rand.mean(0)),
        "random_best_at_1": float(rand[:, 1].min()),
        "greedy_order": greedy.order,
    }
    log(
        f"[{mode}] drawing order: greedy mean prefix fidelity {out['order']['greedy']['mean_prefix_fidelity']:.3f}, "
        f"random {out['order']['random_mean']['mean_prefix_fidelity']:.3f} ({out['order_seconds']:.0f} s)"
    )
    return out, ab, greedy, rand


def grow_vs_prune(args, target, mask):
    """Section 4 of the module docstring (trace loss): (JSON summary, pruning result, growing result)."""
    from clipasso.post.abstraction import auto_abstract, grow_abstract, reached_plateau
    from clipasso.optimize import OptimizeConfig, optimize

    cfg = OptimizeConfig.from_preset("fast", iterations=args.iterations, lr=args.lr, loss="trace")
    out = {
        "loss": "trace",
        "settings": {
            "strokes": args.strokes,
            "iterations": args.iterations,
            "lr": args.lr,
            "prune_iterations": args.prune_iterations,
            "grow_iterations": args.grow_iterations,
            "grow_start": args.grow_start,
            "candidates": 8,
            "preset": "fast",
            "threads": torch.get_num_threads(),
        },
    }
    # wall time and CPU time of this process: on a shared machine the wall time also counts waiting for the CPU
    clocks = (time.perf_counter, time.process_time)

    t0 = [c() for c in clocks]
    full = optimize(start_strokes(target, mask, args.strokes, args.seed), target, None, cfg, device="cpu").strokes
    t1 = [c() for c in clocks]
    pr = auto_abstract(
        full,
        target,
        None,
        0.9,
        cfg,
        prune_iterations=args.prune_iterations,
        full_curve=True,
        device="cpu",
        callback=lambda k, loss, s: log(f"[prune]  {k:3d} strokes: {loss:.4f}"),
    )
    t2 = [c() for c in clocks]
    few = optimize(start_strokes(target, mask, args.grow_start, args.seed), target, None, cfg, device="cpu").strokes
    t3 = [c() for c in clocks]
    gr = grow_abstract(
        few,
        target,
        None,
        0.9,
        cfg,
        max_strokes=args.strokes,
        grow_iterations=args.grow_iterations,
        min_gain=0.0,
        full_curve=True,
        device="cpu",
        callback=lambda k, loss, s: log(f"[grow]   {k:3d} strokes: {loss:.4f}"),
    )
    t4 = [c() for c in clocks]
    for i, clock in enumerate(("seconds", "cpu_seconds")):
        out[clock] = {
            "prune": {"optimise": t1[i] - t0[i], "search": t2[i] - t1[i], "total": t2[i] - t0[i]},
            "grow": {"optimise": t3[i] - t2[i], "search": t4[i] - t3[i], "total": t4[i] - t2[i]},
        }
    pl, gl = dict(zip(pr.counts, pr.losses)), dict(zip(gr.counts, gr.losses))
    out["blank_loss"] = gr.blank_loss
    out["curve"] = [{"strokes": k, "prune": pl.get(k), "grow": gl.get(k)} for k in range(1, args.strokes + 1)]
    stop = next(
        (k for i, k in enumerate(gr.counts) if reached_plateau(gr.losses[: i + 1], gr.blank_loss, 0.01, 2)), None
    )
    out["grow_plateau_stop"] = stop  # the rule is checked before each stage: growing would end with `stop` strokes
    out["chosen_at_0.9"] = {"prune": pr.count, "grow": gr.count}
    best = min(pr.full_loss, gr.full_loss)
    common = {}
    for name, r in (("prune", pr), ("grow", gr)):  # one reference for both: the lowest loss either reached
        ok = [k for k, v in zip(r.counts, r.losses) if (r.blank_loss - v) / (r.blank_loss - best) >= 0.9 - 1e-9]
        common[name] = min(ok) if ok else None
    out["chosen_at_0.9_common_reference"] = common
    out["wins"] = {
        "grow": sum(
            1 for c in out["curve"] if c["prune"] is not None and c["grow"] is not None and c["grow"] < c["prune"]
        ),
        "counts_compared": sum(1 for c in out["curve"] if c["prune"] is not None and c["grow"] is not None),
    }
    return out, pr, gr


NEWEST = (0.85, 0.1, 0.1, 1.0)  # colour of the newest grown stroke in grow_abstraction.png


def grow_picture(target, pr, gr, counts, out_dir, tile: int = 180) -> Path:
    """Section 5: grow_abstraction.png in ``out_dir`` from section 4's pruning (pr) and growing (gr) results."""
    from PIL import Image, ImageDraw, ImageFont

    from clipasso.prepare.images import to_pil
    from clipasso.output.plots import line_chart
    from clipasso.render.raster import render
    from clipasso.prepare.xdog import xdog_edges

    font = ImageFont.load_default()
    label_h, head_w = 32, 90
    counts = [k for k in counts if k in gr.sketches and k in pr.sketches]
    if not counts:
        raise ValueError("none of the picture's stroke counts was reached by both growing and pruning")

    def labelled(img, *lines):
        canvas = Image.new("RGB", (tile, tile + label_h), "white")
        canvas.paste(img.resize((tile, tile), Image.LANCZOS), (0, label_h))
        d = ImageDraw.Draw(canvas)
        for i, text in enumerate(lines):
            d.text((tile / 2, 3 + 13 * i), text, fill=(0, 0, 0), font=font, anchor="mt")
        return canvas

    def sketch_tile(r, k, newest_red):
        s = r.sketches[k]
        if newest_red:  # strokes of a grown sketch are in the order placed: the last one is the newest
            colors = s.colors.clone()
            colors[:, -1] = torch.tensor(NEWEST)
            s = s.replace(colors=colors)
        loss = r.losses[r.counts.index(k)]
        return labelled(
            to_pil(render(s, size=(448, 448)).image[0]),
            f"{k} strokes",
            f"loss {loss:.3f}, fidelity {r.fidelity_of(loss):.2f}",
        )

    ink = xdog_edges(target)
    rows = [
        (
            "grown\n(newest\nstroke in\nred)",
            labelled(to_pil(target), "picture"),
            [sketch_tile(gr, k, k > gr.counts[0]) for k in counts],
        ),
        (
            "pruned",
            labelled(to_pil((1 - ink).expand(3, -1, -1)), "its XDoG line map", "(trace loss target)"),
            [sketch_tile(pr, k, False) for k in counts],
        ),
    ]
    width = head_w + (1 + len(counts)) * tile
    chart = line_chart(
        [
            (f"grown from {gr.counts[0]}", gr.counts, gr.losses),
            (f"pruned from {pr.counts[0]}", pr.counts[::-1], pr.losses[::-1]),
        ],
        title=f"trace loss versus strokes, growing against pruning (empty canvas: {gr.blank_loss:.3f})",
        xlabel="strokes",
        ylabel="eval loss",
        size=(width, 300),
    )
    row_h = tile + label_h
    sheet = Image.new("RGB", (width, 2 * row_h + chart.height + 16), "white")
    d = ImageDraw.Draw(sheet)
    for r, (head, first, tiles) in enumerate(rows):
        d.multiline_text((6, r * row_h + label_h + 8), head, fill=(0, 0, 0), font=font)
        for i, im in enumerate([first] + tiles):
            sheet.paste(im, (head_w + i * tile, r * row_h))
    d.text(
        (6, 2 * row_h + 2),
        f"fidelity: against each method's own reference (grown: its best loss; pruned: its "
        f"{pr.counts[0]}-stroke start) -- compare losses across rows",
        fill=(90, 90, 90),
        font=font,
    )
    sheet.paste(chart, (0, 2 * row_h + 16))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "grow_abstraction.png"
    sheet.save(path, optimize=True)
    log(f"wrote {path}")
    return path


def grow_table(g) -> str:
    st = g["settings"]
    lines = [
        f"\n== grow vs prune ({g['loss']} loss): up to {st['strokes']} strokes, {st['iterations']} iterations "
        f"for the start, {st['prune_iterations']} re-optimisation steps per removal, {st['grow_iterations']} per "
        f"added stroke, growing from {st['grow_start']} ==",
        f"strokes  pruned    grown     (empty canvas {g['blank_loss']:.4f})",
    ]
    for c in g["curve"]:
        if c["prune"] is None and c["grow"] is None:
            continue
        fmt = lambda v: "     -  " if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"{c['strokes']:7d}  {fmt(c['prune'])}    {fmt(c['grow'])}")
    w = g["wins"]
    lines.append(f"grown sketch lower at {w['grow']} of {w['counts_compared']} counts measured by both")
    lines.append(
        f"fidelity 0.9 -> prune {g['chosen_at_0.9']['prune']} strokes, grow {g['chosen_at_0.9']['grow']} "
        f"(each against its own reference); against the lowest loss of either: prune "
        f"{g['chosen_at_0.9_common_reference']['prune']}, grow {g['chosen_at_0.9_common_reference']['grow']}"
    )
    lines.append(f"growing's plateau rule (min_gain 0.01, patience 2) stops at: {g['grow_plateau_stop']}")
    for clock in ("seconds", "cpu_seconds"):
        s = g[clock]
        lines.append(
            f"{'wall' if clock == 'seconds' else 'CPU'} time: prune {s['prune']['total']:.0f} s (optimise "
            f"{s['prune']['optimise']:.0f} + prune {s['prune']['search']:.0f}), grow {s['grow']['total']:.0f} s "
            f"(optimise {s['grow']['optimise']:.0f} + grow {s['grow']['search']:.0f})"
        )
    return "\n".join(lines)


def pictures(target, ab, greedy, rand_curves, mode: str, strokes: int, seed: int, out_dir=ROOT / "docs"):
    """auto_abstraction.png and drawing_order.png in ``out_dir`` (default docs/)."""
    from PIL import Image, ImageDraw, ImageFont

    from clipasso.prepare.images import to_pil
    from clipasso.output.animation import drawing_frames
    from clipasso.post.order import reorder
    from clipasso.output.plots import abstraction_chart, line_chart
    from clipasso.render.raster import render

    font = ImageFont.load_default()
    tile = 180

    def labelled(img, text):
        canvas = Image.new("RGB", (tile, tile + 18), "white")
        canvas.paste(img.resize((tile, tile), Image.LANCZOS), (0, 18))
        ImageDraw.Draw(canvas).text((tile / 2, 3), text, fill=(0, 0, 0), font=font, anchor="mt")
        return canvas

    # auto abstraction: the curve and the sketches at a few counts
    chart = abstraction_chart(ab, size=(5 * tile, 300))
    counts = sorted(
        {ab.counts[0], ab.count, *[k for k in (2 * ab.count, ab.count // 2, 4) if k in ab.sketches]}, reverse=True
    )[:4]
    row = [labelled(to_pil(target), "picture")] + [
        labelled(
            to_pil(render(ab.sketches[k], size=(448, 448)).image[0]),
            f"{k} strokes, fidelity {ab.fidelity_of(ab.losses[ab.counts.index(k)]):.2f}"
            + (" (chosen)" if k == ab.count else ""),
        )
        for k in counts
    ]
    sheet = Image.new("RGB", (5 * tile, chart.height + tile + 18), "white")
    sheet.paste(chart, (0, 0))
    for i, im in enumerate(row):
        sheet.paste(im, (i * tile, chart.height))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet.save(out_dir / "auto_abstraction.png", optimize=True)

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
    series = [
        ("greedy order", xs, [float(v) for v in greedy.prefix_losses]),
        ("random orders (mean)", xs, [float(v) for v in rand_curves.mean(0)]),
    ]
    chart = line_chart(
        series,
        title=f"loss of the first k strokes ({mode} loss)",
        xlabel="strokes drawn",
        ylabel="eval loss",
        size=(n * tile + 90, 300),
    )
    sheet.paste(chart, (0, 2 * (tile + 18)))
    sheet.save(out_dir / "drawing_order.png", optimize=True)
    log(f"wrote auto_abstraction.png and drawing_order.png in {out_dir}")


def table(results) -> str:
    lines = []
    for r in results:
        m = r["loss"]
        lines.append(
            f"\n== {m} loss: {r['settings']['strokes']} strokes, {r['settings']['iterations']} iterations, "
            f"{r['settings']['prune_iterations']} re-optimisation steps per removal =="
        )
        lines.append(
            f"pruning curve (empty canvas {r['blank_loss']:.4f}; loss rose on {r['curve_increases']} removals)"
        )
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
            lines.append(
                f"{name:11s}  "
                + "  ".join(f"{o[name]['at'][k]:.3f}" for k in ks)
                + f"  {o[name]['mean_prefix_fidelity']:.3f}"
            )
        lines.append(
            f"time: optimise {r['optimise_seconds']:.0f} s, prune {r['prune_seconds']:.0f} s, "
            f"order {r['order_seconds']:.0f} s"
        )
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
    ap.add_argument(
        "--grow-picture",
        action="store_true",
        help="write grow_abstraction.png from section 4's runs (JSON only with --grow-vs-prune too)",
    )
    ap.add_argument(
        "--grow-counts",
        type=int,
        nargs="+",
        default=[2, 4, 8, 12, 16],
        help="stroke counts shown in grow_abstraction.png (default 2 4 8 12 16)",
    )
    ap.add_argument("--out-dir", default=str(ROOT / "docs"), help="folder the pictures are written to (docs/)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "abstraction_cpu.json"))
    ap.add_argument("--table-only", action="store_true", help="print the table of an existing --out file")
    ap.add_argument(
        "--grow-vs-prune",
        action="store_true",
        help="only section 4 (trace loss), merged into an existing --out file as 'grow_vs_prune'",
    )
    ap.add_argument("--grow-start", type=int, default=2, help="strokes growing starts from (default 2)")
    ap.add_argument(
        "--grow-iterations",
        type=int,
        default=20,
        help="re-optimisation steps after each added stroke (default 20, the engine's default)",
    )
    args = ap.parse_args(argv)
    if args.table_only:
        data = json.loads(Path(args.out).read_text())
        print(table(data["results"]) + ("\n" + grow_table(data["grow_vs_prune"]) if "grow_vs_prune" in data else ""))
        return 0
    if args.grow_vs_prune or args.grow_picture:
        if not 1 <= args.grow_start < args.strokes:
            ap.error(f"--grow-start must be from 1 to --strokes - 1 ({args.strokes - 1})")
        counts = [k for k in args.grow_counts if args.grow_start <= k <= args.strokes]
        if args.grow_picture and not counts:
            ap.error(f"--grow-counts needs a count from --grow-start ({args.grow_start}) to --strokes ({args.strokes})")
        torch.manual_seed(args.seed)
        torch.set_num_threads(min(2, torch.get_num_threads()))
        target, mask, matted = prepare(args.canvas)
        g, pr, gr = grow_vs_prune(args, target, mask)
        if args.grow_picture:
            grow_picture(target, pr, gr, counts, args.out_dir)
        if not args.grow_vs_prune:
            return 0
        g["picture"] = "clipasso/data/example.jpg" + (" (matted with u2netp)" if matted else " (not matted)")
        path = Path(args.out)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data["grow_vs_prune"] = g
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        print(grow_table(g))
        return 0

    torch.manual_seed(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from clipasso.models import load_clip
    from clipasso.optimize import OptimizeConfig
    from clipasso.testing.tiny_models import TINY_RN, write_tiny_models

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
        pictures(target, last[0], last[1], last[2], last[3], args.strokes, args.seed, args.out_dir)
    payload = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "picture": "clipasso/data/example.jpg" + (" (matted with u2netp)" if matted else " (not matted)"),
        "clip_encoder": "tiny random ResNet (clipasso/testing/tiny_models.py)" if "clip" in modes else None,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
