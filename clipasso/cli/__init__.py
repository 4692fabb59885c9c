"""Command line: ``clipasso sketch INPUT -o OUT.svg`` (see ``clipasso sketch --help``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

from ..output.paths import OutputPathError, check_output_paths
from .options import (
    LIMITS,
    ProgressBar,
    add_settings_arguments,
    flag_of,
    fmt_time,
    log_compile_to_stderr,
    log_to_stderr,
    settings_or_usage_error,
    sigterm_stop,
    signal_handlers,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: stopped by SIGTERM after writing the best sketch so far

EXIT_STATUS_HELP = (
    "exit status: 0 done (also after one Ctrl+C, which stops and writes the best sketch so far); "
    "1 an error while working (the message says what to do; --debug shows the traceback); "
    "2 a bad option or output path, found before any work starts; "
    f"{EXIT_TERMINATED} stopped by SIGTERM, after writing the best sketch so far. "
    "Every output is written to a temporary file in its folder and then renamed over the target, "
    "so an interrupted run never leaves a half-written file nor destroys the previous one."
)


def _print_error(exc: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, MemoryError):
        msg = "out of memory; use fewer --strokes or --seeds, a smaller --canvas or --png-size"
    elif type(exc).__module__ == "builtins" and type(exc).__name__ not in ("ValueError", "RuntimeError"):
        msg = f"{type(exc).__name__}: {msg}"
    print(
        f"clipasso: error: {msg}" + ("" if debug else "\n(run again with --debug to see the traceback)"),
        file=sys.stderr,
    )


def _add_debug(parser, top: bool = False) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="on an error, also print the Python traceback",
    )


def build_parser() -> argparse.ArgumentParser:
    from ..settings import fmt
    from ..settings import PRESET_HELP, PRESET_NAMES

    parser = argparse.ArgumentParser(
        prog="clipasso", description="CLIPasso: turn a picture of an object into an abstract sketch of a few strokes."
    )
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sk = sub.add_parser(
        "sketch",
        help="sketch an image into an SVG (and PNG)",
        description="Sketch INPUT with CLIPasso and write the winning sketch as SVG (and PNG). "
        "Without INPUT the bundled example image is sketched. Every option and output "
        "path is checked before any work starts. The options are the settings of "
        "clipasso.settings (the same as the Python API's and the nodes').",
        epilog=EXIT_STATUS_HELP
        + " Upper bounds: "
        + ", ".join(f"{flag_of(k)} {fmt(b.high)}" for k, b in LIMITS.items() if k != "strokes_x_seeds")
        + f", strokes x seeds {fmt(LIMITS['strokes_x_seeds'].high)}.",
    )
    _add_debug(sk)
    sk.add_argument(
        "input", nargs="?", metavar="INPUT", help="image file (PNG, JPEG, WebP, ...); default: bundled example"
    )
    sk.add_argument("-o", "--output", metavar="OUT.svg", help="SVG to write (default: <input name>_sketch.svg)")
    sk.add_argument(
        "--png", metavar="OUT.png", help="also write a PNG of the sketch (2x the canvas, 448 px, unless --png-size)"
    )
    sk.add_argument(
        "--png-size",
        type=int,
        metavar="N",
        help="long side of the PNG in pixels (default 2x the canvas); the sketch is vector, any size is sharp",
    )
    sk.add_argument("--preset", choices=list(PRESET_NAMES), default="paper", help=PRESET_HELP)
    add_settings_arguments(sk)
    out = sk.add_argument_group("drawing outputs")
    out.add_argument(
        "--gif", metavar="OUT.gif", help="write an animated GIF of the drawing being made (implies --order)"
    )
    out.add_argument(
        "--animated-svg",
        metavar="OUT.svg",
        help="write an animated SVG, strokes drawn one after another (implies --order)",
    )
    out.add_argument(
        "--curve",
        metavar="OUT.json",
        help="write the loss-versus-strokes curve (and the drawing order's prefix losses) as JSON",
    )
    sk.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from ..report import add_report_parser
    from .batch import add_batch_parser

    add_batch_parser(sub)
    _add_debug(sub.choices["batch"])

    add_report_parser(sub)
    _add_debug(sub.choices["report"])
    from .video import add_video_parser

    _add_debug(add_video_parser(sub))
    dl = sub.add_parser(
        "download-weights",
        help="download the default models once (online) and check they load",
        description="Download the CLIP models CLIPasso uses (RN101 for the loss, ViT-B-32 for the "
        "saliency map, about 630 MB together) with a progress bar, and check that each "
        "loads. With --models-dir each lands there as one file; without, in the caches "
        "the search looks in (Hugging Face's, ~/.cache/clip). After that, sketching needs "
        "no network (--offline).",
    )
    dl.add_argument(
        "--models-dir",
        metavar="DIR",
        help="folder to put the files in (e.g. ComfyUI/models/clipasso); "
        "default: $CLIPASSO_MODELS_DIR, else the download caches",
    )
    dl.add_argument("--clip-model", metavar="NAME", default="RN101", help="loss model (default RN101)")
    dl.add_argument("--saliency-model", metavar="NAME", default="ViT-B-32", help="saliency model (default ViT-B-32)")
    dl.add_argument("--pretrained", metavar="TAG", default="openai", help="pretrained tag of both (default openai)")
    dl.add_argument(
        "--matting-model",
        metavar="NAME",
        default="u2netp",
        help="background-removal model (default u2netp, which ships with clipasso: nothing to download)",
    )
    _add_debug(dl)
    return parser


def _download_weights(args) -> int:
    from ..settings import MODELS_DIR_ENV

    folder = args.models_dir or (os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep)[0] or None)
    if folder is not None:
        problem = _folder_problem(Path(folder))
        if problem:
            print(f"clipasso: error: --models-dir {folder}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    from ..models import ModelConfigError, WeightsNotFoundError, download_weights  # torch: the work starts here

    failed = 0
    for name in dict.fromkeys([args.clip_model, args.saliency_model]):
        try:
            enc = download_weights(name, args.pretrained, folder)
            print(f"{enc.name} ({args.pretrained}): {enc.source} loads")
        except (WeightsNotFoundError, ModelConfigError) as exc:
            print(f"clipasso: error: {exc}", file=sys.stderr)
            failed += 1
    try:
        from ..prepare.matting import MattingError, MattingWeightsNotFoundError, find_weights, get_session

        have = find_weights(args.matting_model, folder)
        if have is None:
            get_session(args.matting_model, models_dir=folder, allow_download=True)
            have = find_weights(args.matting_model, folder)
        print(f"{args.matting_model}: {have or 'loaded'}")
    except (MattingError, MattingWeightsNotFoundError, ImportError) as exc:
        print(f"clipasso: error: {exc}", file=sys.stderr)
        failed += 1
    return EXIT_ERROR if failed else EXIT_OK


def _folder_problem(folder: Path) -> Optional[str]:
    """Why files cannot be put in ``folder`` (created if missing), or None."""
    from ..atomic import probe_folder

    if folder.exists() and not folder.is_dir():
        return "this is a file, not a folder; give a folder to put the weights in"
    probe = folder
    while not probe.exists():  # the folder is created by the download: its nearest existing parent must be writable
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        probe_folder(probe)
    except OSError as exc:
        return f"cannot write to {probe} ({exc.strerror or exc}); choose a folder you can write to"
    return None


def sketch_path_problem(args, out_svg: Path) -> Optional[str]:
    """The first problem with the input or an output path of `clipasso sketch`, or None."""
    if args.input is not None:
        from ..prepare.files import ImageError, check_image_path  # no torch: the checks come before any work

        try:
            check_image_path(args.input)  # missing, a folder, a link loop, a name too long, ...
        except ImageError as exc:
            msg = str(exc)
            return (
                msg.replace("image file not found", "input image not found", 1)
                if msg.startswith("image file not found")
                else msg
            )
    inputs = [p for p in (args.input, args.clip_weights, args.saliency_weights) if p]
    try:
        check_output_paths(
            [
                ("-o", str(out_svg), (".svg",), "-o writes the SVG; a PNG goes to --png OUT.png"),
                ("--png", args.png, (".png",), "--png writes a PNG; the SVG goes to -o OUT.svg"),
                ("--gif", args.gif, (".gif",), ""),
                ("--animated-svg", args.animated_svg, (".svg",), ""),
                ("--curve", args.curve, (".json",), ""),
            ],
            inputs,
        )
    except OutputPathError as exc:
        return str(exc)
    return None


def _sketch(args, settings) -> int:
    from ..errors import ClipassoError

    # every engine error derives from ClipassoError; torch and the OS raise the others
    errors = (ClipassoError, ValueError, FileNotFoundError, RuntimeError)

    stem = Path(args.input).stem if args.input else "example"
    out_svg = Path(args.output) if args.output else Path(f"{stem}_sketch.svg")
    problem = sketch_path_problem(args, out_svg)
    if problem:
        print(f"clipasso: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    import torch  # the work starts here: every option and path above was checked without torch

    total = settings.iterations
    if settings.scene:  # each layer's run, then the joint pass
        from ..scene import scene_steps

        total = scene_steps(settings)
    bar = ProgressBar(total, enabled=not args.quiet)
    stop = {"requested": False, "terminated": False}

    def on_sigint(signum, frame):  # first Ctrl+C: stop and keep the best so far; second: abort
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nclipasso: stopping after this iteration (Ctrl+C again to abort)...", file=sys.stderr)

    def progress(it, losses, image):
        best = float(torch.nan_to_num(losses["best"], nan=float("inf")).min())
        bar.update(it, best)

    # SIGTERM as Ctrl+C: stop, write the best sketch so far, then exit 143
    on_sigterm = sigterm_stop(stop, "stopping after this iteration and writing the best sketch so far...")
    with signal_handlers({signal.SIGINT: on_sigint, signal.SIGTERM: on_sigterm}):
        return _run_and_write(args, settings, out_svg, bar, stop, progress, errors)


def _run_and_write(args, settings, out_svg, bar, stop, progress, errors) -> int:
    from ..pipeline import sketch

    if (settings.auto_strokes is not None or settings.drawing_order) and not args.quiet:
        _log_stages_to_stderr()
    if not args.quiet:
        log_compile_to_stderr()
    try:
        result = sketch(
            args.input, settings.replace(callback_interval=1), callback=progress, should_stop=lambda: stop["requested"]
        )
    except errors as exc:
        bar.close()
        msg = str(exc)
        if "background" in type(exc).__name__.lower() or "Matting" in type(exc).__name__:
            msg += "\n(or run without background removal: --no-background-removal)"
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)
        print(f"clipasso: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    bar.close()

    result.save_svg(out_svg)
    if args.png:
        canvas = max(result.strokes.canvas)  # a stretched sketch comes back with the picture's shape
        result.save_png(args.png, scale=(args.png_size / canvas) if args.png_size else 2.0)
    abstraction_lines = _drawing_outputs(result, args)
    run = result.run
    s = result.settings
    if result.layers is not None:
        lines = [f"sketch: {out_svg}" + (f" and {args.png}" if args.png else "")] + _scene_lines(result)
        lines += abstraction_lines + [f"  note: {n}" for n in result.notes]
        if stop.get("terminated"):
            lines.append(f"  stopped by SIGTERM: the best sketch so far is written (exit status {EXIT_TERMINATED})")
        print("\n".join(lines), flush=True)
        return EXIT_TERMINATED if stop.get("terminated") else EXIT_OK
    lines = [
        f"sketch: {out_svg}" + (f" and {args.png}" if args.png else ""),
        f"  winner: seed {result.seed} (candidate {result.index + 1} of {len(s['seeds'])}), "
        f"loss {result.loss:.4f} at iteration {int(result.strokes.iterations[0])}",
        "  candidates: "
        + ", ".join(
            f"seed {sd}: {float(loss):.4f}" for sd, loss in zip(result.candidates.seeds, result.candidates.losses)
        ),
        f"  {s['strokes']} strokes, {run.iterations_run}/{s['iterations']} iterations"
        + (" (stopped early)" if run.cancelled else " (plateau)" if run.stop_reason == "plateau" else "")
        + f", preset {s['preset']}, {s['clip_model'] or 'trace loss'} on {s['device']}"
        + (f" in {s['precision']}" if s.get("clip_model") else ""),
        f"  time: {fmt_time(result.seconds)} total, {run.seconds_per_iteration:.3f} s/iteration "
        + (
            f"for {len(s['seeds'])} seed(s) together"
            if run.survivors is None
            else f"on average ({run.candidate_steps} candidate steps)"
        ),
    ]
    if run.survivors is not None:
        lines.append(f"  seed trial: {run.trial_text()}")
    if run.compile and run.compile.get("decision"):  # the compile setting's decision (policies.CompileEncoder)
        lines.append(f"  compile {run.compile['mode']}: {run.compile['decision']}")
    lines += abstraction_lines
    styled = [
        n.replace("_", " ")
        for n in ("optimize_width", "optimize_opacity", "color_from_image", "optimize_color")
        if s.get(n)
    ] + ([f"pen {s['pen_width']:g} px"] if s.get("pen_width") else [])
    if s.get("text"):
        lines.append(f"  text guidance: {s['text']!r} (weight {s['text_weight']:g})")
    if styled:
        lines.append("  styled strokes: " + ", ".join(styled))
    lines += [f"  note: {n}" for n in result.notes]
    if stop.get("terminated"):
        lines.append(f"  stopped by SIGTERM: the best sketch so far is written (exit status {EXIT_TERMINATED})")
    print("\n".join(lines), flush=True)
    return EXIT_TERMINATED if stop.get("terminated") else EXIT_OK


def _scene_lines(result) -> List[str]:
    """The summary of a scene sketch: each layer's strokes, winner and loss, and the joint pass."""
    s = result.settings
    lines = [
        f"  scene: {result.strokes.num_strokes} strokes in {len(result.layers)} layer(s), "
        f"{s['canvas']} px canvas, preset {s['preset']}, on {s['device']}"
    ]
    for name, layer in result.layers.items():
        run = layer.run
        enc = layer.objective.encoder
        loss = enc.name if enc is not None else "trace loss"
        if name == "background" and enc is not None and enc.is_vit:
            loss += f" block {s['scene_block']}"
        lines.append(
            f"  {name}: {layer.strokes.num_strokes} strokes, {loss}; seed {layer.strokes.seeds[0]} won with loss "
            f"{float(layer.strokes.losses[0]) if layer.strokes.losses is not None else layer.loss:.4f}, "
            f"{run.iterations_run}/{s['iterations']} iterations in {fmt_time(run.seconds)}"
        )
        ab = layer.abstraction
        if ab is not None:
            fid = ab.fidelities[ab.counts.index(ab.count)]
            lines.append(
                f"    automatic abstraction: {ab.count} strokes keep fidelity {fid:.3f} (target {ab.fidelity:.2f})"
            )
    j = result.joint
    lines.append(
        f"  joint pass: {j.iterations} steps on the whole picture, loss {j.loss_before:.4f} -> {j.loss_after:.4f}"
    )
    lines.append(f"  time: {fmt_time(result.seconds)} total")
    return lines


def _log_stages_to_stderr() -> None:
    """Show the progress of automatic abstraction and drawing order (their loggers) on stderr."""
    log_to_stderr(("clipasso.post.abstraction", "clipasso.post.order"))


def _drawing_outputs(result, args) -> List[str]:
    """Write --gif / --animated-svg / --curve; the summary lines to print."""
    lines = []
    ab, order = getattr(result, "abstraction", None), getattr(result, "drawing_order", None)
    if ab is not None:
        fid = ab.fidelities[ab.counts.index(ab.count)]
        if getattr(ab, "method", "prune") == "grow":
            why = {"plateau": "the last strokes stopped paying", "max_strokes": "--max-strokes reached"}
            lines.append(
                f"  automatic abstraction (grow): grew from {ab.counts[0]} to {ab.counts[-1]} strokes "
                f"({why.get(ab.stop_reason, 'stopped early')}); {ab.count} strokes keep fidelity {fid:.3f} "
                f"of the best loss reached (target {ab.fidelity:.2f})"
            )
        else:
            lines.append(
                f"  automatic abstraction: {ab.count} of {ab.counts[0]} strokes keep fidelity "
                f"{fid:.3f} (target {ab.fidelity:.2f})" + (" (stopped early)" if ab.cancelled else "")
            )
        lines += ["    " + row for row in ab.table().splitlines()]
    if order is not None:
        pl = [float(v) for v in order.prefix_losses]
        lines.append(
            f"  drawing order: {order.order}; loss after 1 stroke {pl[1]:.4f}, after all "
            f"{pl[-1]:.4f} (empty canvas {pl[0]:.4f})"
        )
        from ..output.animation import drawing_frames, frames_to_gif, write_animated_svg

        if args.gif:
            h, w = result.strokes.canvas
            frames_to_gif(drawing_frames(result.strokes, size=(2 * h, 2 * w)), args.gif)
            lines.append(f"  drawing animation: {args.gif}")
        if args.animated_svg:
            write_animated_svg(result.strokes, args.animated_svg)
            lines.append(f"  animated SVG: {args.animated_svg}")
    elif getattr(result, "layers", None) is not None and (args.gif or args.animated_svg):
        # a scene: each layer was put in drawing order on its own; the background is drawn first
        from ..output.animation import drawing_frames, frames_to_gif, write_animated_svg

        if args.gif:
            h, w = result.strokes.canvas
            frames_to_gif(drawing_frames(result.strokes, size=(2 * h, 2 * w)), args.gif)
            lines.append(f"  drawing animation: {args.gif} (background first, each layer in drawing order)")
        if args.animated_svg:
            write_animated_svg(result.strokes, args.animated_svg)
            lines.append(f"  animated SVG: {args.animated_svg}")
    if args.curve:
        data = {}
        if ab is not None:
            data["abstraction"] = ab.to_dict()
        if order is not None:
            data["drawing_order"] = order.to_dict()
        for name, layer in (getattr(result, "layers", None) or {}).items():  # a scene: per layer
            part = {}
            if layer.abstraction is not None:
                part["abstraction"] = layer.abstraction.to_dict()
            if layer.drawing_order is not None:
                part["drawing_order"] = layer.drawing_order.to_dict()
            data.setdefault("layers", {})[name] = part
        from ..atomic import write_text_atomic

        write_text_atomic(args.curve, json.dumps(data, indent=1))
        lines.append(f"  curve: {args.curve}")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt as exc:  # a second Ctrl+C
        if debug:
            _print_error(exc, True)
        print("clipasso: aborted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:  # an error no handler above expected: the message, not a traceback
        _print_error(exc, debug)
        return EXIT_ERROR


def _subparser(parser, name):
    """The sub-command's own parser (its errors print its usage)."""
    for action in parser._subparsers._group_actions:
        if name in getattr(action, "choices", {}):
            return action.choices[name]
    return parser


def _dispatch(parser, args) -> int:
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "download-weights":
        return _download_weights(args)
    if args.command == "batch":
        from .batch import run_batch

        return run_batch(args, _subparser(parser, "batch"))
    if args.command == "report":
        from ..report import run_report_cli

        return run_report_cli(args)
    if args.command == "video":
        from .video import run_video

        return run_video(args, _subparser(parser, "video"))
    if args.command == "sketch":
        if args.gif or args.animated_svg:
            args.drawing_order = True  # an animation of the drawing needs its order
        for flag, value, suffix in (
            ("--gif", args.gif, ".gif"),
            ("--animated-svg", args.animated_svg, ".svg"),
            ("--curve", args.curve, ".json"),
        ):
            if value is not None and Path(value).suffix.lower() != suffix:
                parser.error(f"{flag} must name a {suffix} file; got {value}")
            if value is not None and not Path(value).parent.exists():
                parser.error(f"the folder for {value} does not exist; create it first")
        if args.curve and args.auto_strokes is None and not args.drawing_order:
            parser.error("--curve needs --auto-strokes or --order (there is no curve to write otherwise)")
        return _sketch(args, settings_or_usage_error(args, parser))
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
