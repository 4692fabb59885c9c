"""`clipasso sketch` options of automatic abstraction and drawing order (kept out of cli.py).

    --auto-strokes FIDELITY   choose the stroke count: optimise --max-strokes strokes, then prune to
                              the fewest that keep FIDELITY of their loss improvement
    --abstraction grow        ... or optimise --start-strokes strokes and add strokes one at a time
                              (--grow-iterations steps after each) until they stop paying
                              (--min-gain) or --max-strokes is reached
    --order                   put the strokes in greedy drawing order
    --gif OUT.gif / --animated-svg OUT.svg   the drawing being made (imply --order)
    --curve OUT.json          the loss-versus-strokes curve and the prefix losses
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List


def add_arguments(parser) -> None:
    g = parser.add_argument_group("automatic abstraction and drawing order")
    g.add_argument("--auto-strokes", type=float, metavar="FIDELITY",
                   help="let the sketch choose its stroke count: optimise --max-strokes strokes, then prune the "
                        "least useful ones while the sketch keeps FIDELITY (0-1] of their loss improvement over "
                        "an empty canvas (0.9 = 90%%)")
    g.add_argument("--max-strokes", type=int, metavar="N",
                   help="the generous budget --auto-strokes starts from, or with --abstraction grow the most strokes "
                        "growing may reach (default: twice --strokes, 32 by default)")
    g.add_argument("--prune-iterations", type=int, metavar="N",
                   help="optimisation steps after each removed stroke (default 20; 0 = none)")
    g.add_argument("--abstraction", choices=["prune", "grow"], default=None,
                   help="how --auto-strokes searches the count: prune (default: optimise --max-strokes strokes, "
                        "remove the least useful one at a time) or grow (optimise --start-strokes strokes, add one "
                        "at a time where ink lowers the loss most; its fidelity is relative to the best loss "
                        "growing reached)")
    g.add_argument("--start-strokes", type=int, metavar="N",
                   help="with --abstraction grow: strokes optimised before growing starts (default 2)")
    g.add_argument("--grow-iterations", type=int, metavar="N",
                   help="with --abstraction grow: optimisation steps of all strokes after each added stroke "
                        "(default 20; 0 = none)")
    g.add_argument("--min-gain", type=float, metavar="F",
                   help="with --abstraction grow: stop when each of the last 2 strokes lowered the loss by less "
                        "than F of the total improvement so far (default 0.01; 0 grows to --max-strokes)")
    g.add_argument("--order", action="store_true",
                   help="order the strokes so that every prefix is the best sketch of its size "
                        "(greedy by loss); the SVG is written in that order")
    g.add_argument("--gif", metavar="OUT.gif", help="write an animated GIF of the drawing being made (implies --order)")
    g.add_argument("--animated-svg", metavar="OUT.svg",
                   help="write an animated SVG, strokes drawn one after another (implies --order)")
    g.add_argument("--curve", metavar="OUT.json",
                   help="write the loss-versus-strokes curve (and the drawing order's prefix losses) as JSON")


def check_arguments(args, parser) -> None:
    """parser.error() for bad values, before any long computation."""
    if args.auto_strokes is not None and not 0 < args.auto_strokes <= 1:
        parser.error(f"--auto-strokes must be a fidelity in (0, 1], e.g. 0.9; got {args.auto_strokes}")
    if args.max_strokes is not None:
        if args.auto_strokes is None:
            parser.error("--max-strokes needs --auto-strokes FIDELITY")
        if args.max_strokes < 2:
            parser.error("--max-strokes must be at least 2")
    grow = args.abstraction == "grow"
    if args.abstraction is not None and args.auto_strokes is None:
        parser.error(f"--abstraction {args.abstraction} needs --auto-strokes FIDELITY")
    for flag, value in (("--start-strokes", args.start_strokes), ("--grow-iterations", args.grow_iterations),
                        ("--min-gain", args.min_gain)):
        if value is not None and not grow:
            parser.error(f"{flag} needs --abstraction grow (with --auto-strokes FIDELITY)")
    if grow and args.prune_iterations is not None:
        parser.error("--prune-iterations is for --abstraction prune; growing uses --grow-iterations")
    if args.prune_iterations is not None and args.prune_iterations < 0:
        parser.error("--prune-iterations must be 0 or more")
    if args.grow_iterations is not None and args.grow_iterations < 0:
        parser.error("--grow-iterations must be 0 or more")
    if args.start_strokes is not None:
        if args.start_strokes < 1:
            parser.error("--start-strokes must be at least 1")
        top = args.max_strokes if args.max_strokes is not None else 2 * (args.strokes or 16)
        if args.start_strokes >= top:
            parser.error(f"--start-strokes ({args.start_strokes}) must be below --max-strokes ({top}"
                         + ("" if args.max_strokes is not None else ", twice --strokes") + "), where growing stops")
    if args.min_gain is not None and not 0 <= args.min_gain < 1:
        parser.error(f"--min-gain must be a share in [0, 1), e.g. 0.01; got {args.min_gain}")
    from .cli import limit_problems  # the bounds live in one table there

    problems = limit_problems(args, ("max_strokes", "start_strokes", "prune_iterations", "grow_iterations"))
    if problems:
        parser.error(problems[0])
    if args.curve and args.auto_strokes is None and not wants_order(args):
        parser.error("--curve needs --auto-strokes or --order (there is no curve to write otherwise)")
    for flag, value, suffix in (("--gif", args.gif, ".gif"), ("--animated-svg", args.animated_svg, ".svg"),
                                ("--curve", args.curve, ".json")):
        if value is None:
            continue
        p = Path(value)
        if p.suffix.lower() != suffix:
            parser.error(f"{flag} must name a {suffix} file; got {value}")
        if p.parent and not p.parent.exists():
            parser.error(f"the folder for {value} does not exist; create it first")


def wants_order(args) -> bool:
    return bool(args.order or args.gif or args.animated_svg)


def sketch_settings(args) -> dict:
    """`clipasso.pipeline.sketch` keywords; also shows the stage progress on stderr unless --quiet."""
    out = {}
    if args.auto_strokes is not None:
        out.update(auto_strokes=args.auto_strokes, max_strokes=args.max_strokes)
        if args.abstraction == "grow":
            out.update(abstraction_method="grow",
                       start_strokes=2 if args.start_strokes is None else args.start_strokes,
                       grow_iterations=20 if args.grow_iterations is None else args.grow_iterations,
                       min_gain=0.01 if args.min_gain is None else args.min_gain)
        else:
            out["prune_iterations"] = 20 if args.prune_iterations is None else args.prune_iterations
    if wants_order(args):
        out["drawing_order"] = True
    if out and not args.quiet:
        for name in ("clipasso.abstraction", "clipasso.order"):
            logger = logging.getLogger(name)
            if not logger.handlers:
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(message)s"))
                logger.addHandler(handler)
                logger.setLevel(logging.INFO)
    return out


def write_outputs(result, args) -> List[str]:
    """Write --gif / --animated-svg / --curve; the summary lines to print."""
    lines = []
    ab, order = getattr(result, "abstraction", None), getattr(result, "drawing_order", None)
    if ab is not None:
        fid = ab.fidelities[ab.counts.index(ab.count)]
        if getattr(ab, "method", "prune") == "grow":
            why = {"plateau": "the last strokes stopped paying", "max_strokes": "--max-strokes reached"}
            lines.append(f"  automatic abstraction (grow): grew from {ab.counts[0]} to {ab.counts[-1]} strokes "
                         f"({why.get(ab.stop_reason, 'stopped early')}); {ab.count} strokes keep fidelity {fid:.3f} "
                         f"of the best loss reached (target {ab.fidelity:.2f})")
        else:
            lines.append(f"  automatic abstraction: {ab.count} of {ab.counts[0]} strokes keep fidelity "
                         f"{fid:.3f} (target {ab.fidelity:.2f})" + (" (stopped early)" if ab.cancelled else ""))
        lines += ["    " + row for row in ab.table().splitlines()]
    if order is not None:
        pl = [float(v) for v in order.prefix_losses]
        lines.append(f"  drawing order: {order.order}; loss after 1 stroke {pl[1]:.4f}, after all "
                     f"{pl[-1]:.4f} (empty canvas {pl[0]:.4f})")
        from .order import drawing_frames, frames_to_gif, write_animated_svg

        if args.gif:
            h, w = result.strokes.canvas
            frames_to_gif(drawing_frames(result.strokes, size=(2 * h, 2 * w)), args.gif)
            lines.append(f"  drawing animation: {args.gif}")
        if args.animated_svg:
            write_animated_svg(result.strokes, args.animated_svg)
            lines.append(f"  animated SVG: {args.animated_svg}")
    if args.curve:
        data = {}
        if ab is not None:
            data["abstraction"] = ab.to_dict()
        if order is not None:
            data["drawing_order"] = order.to_dict()
        from .atomic import write_text_atomic

        write_text_atomic(args.curve, json.dumps(data, indent=1))
        lines.append(f"  curve: {args.curve}")
    return lines
