"""Command line: ``clipasso sketch INPUT -o OUT.svg`` (see ``clipasso sketch --help``)."""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressBar:
    """One stderr line: iterations, current best loss, speed and ETA (redrawn in place on a terminal,
    printed every 10% otherwise, e.g. in CI logs)."""

    def __init__(self, total: int, stream=None, width: int = 24, enabled: bool = True):
        self.total = max(1, int(total))
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_decile = -1

    def update(self, iteration: int, best: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        frac = min(1.0, iteration / self.total)
        decile = int(frac * 10)
        if self.tty and now - self.last_draw < 0.1 and iteration < self.total:
            return
        if not self.tty and decile == self.last_decile and iteration < self.total:
            return
        self.last_draw, self.last_decile = now, decile
        elapsed = now - self.start
        rate = elapsed / iteration if iteration else float("nan")
        eta = rate * (self.total - iteration) if iteration else float("nan")
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"[{bar}] {iteration}/{self.total} {frac * 100:3.0f}% | best loss {best:.4f} | "
                f"{rate:.2f} s/it | ETA {_fmt_time(eta)}")
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    from .images import FRAMINGS
    from .matting import MATTING_MODELS  # a static list: rembg itself is not imported here

    parser = argparse.ArgumentParser(
        prog="clipasso", description="CLIPasso: turn a picture of an object into an abstract sketch of a few strokes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sk = sub.add_parser("sketch", help="sketch an image into an SVG (and PNG)",
                        description="Sketch INPUT with CLIPasso and write the winning sketch as SVG (and PNG). "
                                    "Without INPUT the bundled example image is sketched.")
    sk.add_argument("input", nargs="?", metavar="INPUT", help="image file (PNG, JPEG, WebP, ...); default: bundled example")
    sk.add_argument("-o", "--output", metavar="OUT.svg", help="SVG to write (default: <input name>_sketch.svg)")
    sk.add_argument("--png", metavar="OUT.png", help="also write a PNG of the sketch (2x the canvas, 448 px, unless --png-size)")
    sk.add_argument("--preset", choices=["paper", "fast"], default="paper",
                    help="paper: the original settings (RN101, 4 augmentations, 2000 iterations, best of 3); "
                         "fast: a CPU-friendly setting (see README)")
    sk.add_argument("--strokes", type=int, help="number of strokes (abstraction level; preset default 16)")
    sk.add_argument("--seeds", type=int, help="candidates to optimise together; the lowest loss wins (paper: 3)")
    sk.add_argument("--iterations", type=int, help="optimisation steps (paper: 2000)")
    sk.add_argument("--seed", type=int, default=0, help="first seed; candidates use seed, seed+1000, ... (default 0)")
    sk.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="compute device")
    sk.add_argument("--clip-model", metavar="NAME", help="open_clip model for the loss (default RN101)")
    sk.add_argument("--clip-pretrained", metavar="TAG", default="openai", help="pretrained tag (default openai)")
    sk.add_argument("--clip-weights", metavar="FILE", help="explicit weights file for the loss model")
    sk.add_argument("--saliency-model", metavar="NAME", default="ViT-B-32",
                    help="open_clip ViT for the saliency map (default ViT-B-32)")
    sk.add_argument("--saliency-weights", metavar="FILE", help="explicit weights file for the saliency model")
    sk.add_argument("--saliency", default="clip-attention", metavar="METHOD",
                    help="stroke placement: clip-attention (original), clip-relevancy, timm-vit (a timm ViT such as DINO: name in --saliency-model, file in --saliency-weights), mask (inside the object mask: no saliency model; the mask comes from the picture's alpha or from background removal with the bundled u2netp), or none (uniform random)")
    sk.add_argument("--saliency-text", metavar="PROMPT",
                    help="prompt for --saliency clip-relevancy (default: the image's own embedding)")
    sk.add_argument("--temperature", type=float, default=0.3,
                    help="softmax temperature of the start-point sampling (paper 0.3; higher spreads strokes)")
    sk.add_argument("--no-xdog", action="store_true",
                    help="do not restrict start points to the XDoG edge map (the paper intersects them)")
    sk.add_argument("--matting-model", default="u2netp", metavar="NAME",
                    help="rembg model for background removal: u2netp (default; the small U2-Net, 4.6 MB, ships with "
                         "clipasso so it works offline), u2net (the full U2-Net the original used, 176 MB, downloaded "
                         "by rembg or put in --models-dir; the original cut the background out only with its "
                         "--mask_object 1, off by default though its README recommends it), or another rembg model: "
                         + ", ".join(MATTING_MODELS[2:]))
    sk.add_argument("--models-dir", metavar="DIR", action="append",
                    help="folder with model files, CLIP and matting weights (repeatable: all are searched, in order); "
                         "also $CLIPASSO_MODELS_DIR (folders separated by os.pathsep)")
    sk.add_argument("--no-background-removal", action="store_true", help="do not remove the background (rembg)")
    sk.add_argument("--offline", action="store_true", help="never download weights; fail with where to put them")
    sk.add_argument("--lr", type=float, help="Adam learning rate on pixel coordinates (default 1.0)")
    sk.add_argument("--loss", choices=["clip", "trace", "clip+trace"], default="clip",
                    help="clip: CLIPasso's CLIP loss (default); trace: a weights-free image-space loss that traces "
                         "the picture's lines (no CLIP model; with --saliency mask or none no CLIP model is loaded at all, only "
                         "the bundled u2netp for background removal unless --no-background-removal); "
                         "clip+trace: both")
    sk.add_argument("--trace-weight", type=float, metavar="W",
                    help="weight of the trace term in clip+trace (default 1.0)")
    sk.add_argument("--reseed", type=int, metavar="N",
                    help="every N steps move strokes that have shrunk to dots to lines still missing ink "
                         "(default: 50 with --loss trace or clip+trace, off with clip; 0 = off)")
    sk.add_argument("--canvas", type=int, metavar="PX",
                    help="side of the working canvas (default 224, CLIP's input). Larger (e.g. 448) renders finer "
                         "and is box-downsampled for the loss; the encoder's cost is unchanged, rendering 4x the "
                         "pixels adds about 14 ms per step on a 2-core CPU (bench/features.py)")
    sk.add_argument("--framing", choices=FRAMINGS,
                    help="how the picture goes onto the square canvas: stretch (the original's default: a non-square "
                         "picture is stretched for the optimisation and the sketch is mapped back to its shape), "
                         "fix-scale (the original's fix_scale=1: a white square with 10 input pixels a side), pad "
                         "(a white square with a 10/224 margin); default: the preset's (paper stretch, fast pad)")
    sk.add_argument("--png-size", type=int, metavar="N",
                    help="long side of the PNG in pixels (default 2x the canvas); the sketch is vector, any size is sharp")
    guide = sk.add_argument_group("text guidance")
    guide.add_argument("--text", metavar="PROMPT",
                       help='nudge the sketch toward a description, e.g. --text "a cat, side view" '
                            "(uses the loss model's text tower)")
    guide.add_argument("--text-weight", type=float, metavar="W",
                       help="weight of the text term (default 0.3: a nudge; 1 and more let the words win over the picture; bench/text_guidance.py)")
    style = sk.add_argument_group("styled strokes")
    style.add_argument("--optimize-width", action="store_true",
                       help="also optimise each stroke's width (lines of 1 to 8 px)")
    style.add_argument("--optimize-opacity", action="store_true",
                       help="also optimise each stroke's opacity (0.05 to 1)")
    style.add_argument("--color-from-image", action="store_true",
                       help="colour each stroke like the picture under it")
    style.add_argument("--optimize-color", action="store_true", help="also optimise each stroke's colour")
    style.add_argument("--pen-width", type=float, metavar="PX",
                       help="draw every stroke with this line width in canvas pixels (3 = CLIPasso's pen), "
                            "whatever was optimised")
    from .abstraction_cli import add_arguments as add_abstraction_arguments

    add_abstraction_arguments(sk)
    sk.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from .report import add_report_parser

    add_report_parser(sub)
    dl = sub.add_parser("download-weights", help="download the default models once (online) and check they load",
                        description="Download the CLIP models CLIPasso uses (RN101 for the loss, ViT-B-32 for the "
                                    "saliency map, about 630 MB together) with a progress bar, and check that each "
                                    "loads. With --models-dir each lands there as one file; without, in the caches "
                                    "the search looks in (Hugging Face's, ~/.cache/clip). After that, sketching needs "
                                    "no network (--offline).")
    dl.add_argument("--models-dir", metavar="DIR", help="folder to put the files in (e.g. ComfyUI/models/clipasso); "
                                                        "default: $CLIPASSO_MODELS_DIR, else the download caches")
    dl.add_argument("--clip-model", metavar="NAME", default="RN101", help="loss model (default RN101)")
    dl.add_argument("--saliency-model", metavar="NAME", default="ViT-B-32", help="saliency model (default ViT-B-32)")
    dl.add_argument("--pretrained", metavar="TAG", default="openai", help="pretrained tag of both (default openai)")
    dl.add_argument("--matting-model", metavar="NAME", default="u2netp",
                    help="background-removal model (default u2netp, which ships with clipasso: nothing to download)")
    return parser


def _download_weights(args) -> int:
    from .models import MODELS_DIR_ENV, ModelConfigError, WeightsNotFoundError, download_weights

    folder = args.models_dir or (os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep)[0] or None)
    failed = 0
    for name in dict.fromkeys([args.clip_model, args.saliency_model]):
        try:
            enc = download_weights(name, args.pretrained, folder)
            print(f"{enc.name} ({args.pretrained}): {enc.source} loads")
        except (WeightsNotFoundError, ModelConfigError) as exc:
            print(f"clipasso: error: {exc}", file=sys.stderr)
            failed += 1
    try:
        from .matting import MattingError, MattingWeightsNotFoundError, find_weights, get_session

        have = find_weights(args.matting_model, folder)
        if have is None:
            get_session(args.matting_model, models_dir=folder, allow_download=True)
            have = find_weights(args.matting_model, folder)
        print(f"{args.matting_model}: {have or 'loaded'}")
    except (MattingError, MattingWeightsNotFoundError, ImportError) as exc:
        print(f"clipasso: error: {exc}", file=sys.stderr)
        failed += 1
    return EXIT_ERROR if failed else EXIT_OK


def _feature_settings(args) -> dict:
    """Text guidance, styled strokes and canvas flags as `clipasso.pipeline.sketch` keywords."""
    out = {}
    if args.text is not None:
        out["text"] = args.text
    if args.text_weight is not None:
        out["text_weight"] = args.text_weight
    for name in ("optimize_width", "optimize_opacity", "optimize_color", "color_from_image"):
        if getattr(args, name):
            out[name] = True
    if args.pen_width is not None:
        out["pen_width"] = args.pen_width
    if args.canvas is not None:
        out["canvas"] = args.canvas
    return out


def _sketch(args) -> int:
    import torch

    from .images import ImageError
    from .models import ModelConfigError, WeightsNotFoundError
    from . import abstraction_cli
    from .pipeline import PipelineError, sketch
    from .strokes import StrokeError

    errors = (ImageError, WeightsNotFoundError, ModelConfigError, PipelineError, StrokeError, ValueError,
              FileNotFoundError, RuntimeError)
    try:
        from .matting import MattingError, MattingWeightsNotFoundError
        errors = errors + (MattingError, MattingWeightsNotFoundError)
    except ImportError:  # pragma: no cover - matting is part of the package
        pass

    if args.input is not None and not os.path.exists(args.input):
        print(f"clipasso: error: input image not found: {args.input}", file=sys.stderr)
        return EXIT_USAGE
    stem = Path(args.input).stem if args.input else "example"
    out_svg = Path(args.output) if args.output else Path(f"{stem}_sketch.svg")
    if out_svg.suffix.lower() != ".svg":
        print(f"clipasso: error: the output must be an .svg file; got {out_svg}", file=sys.stderr)
        return EXIT_USAGE
    for p in [out_svg] + ([Path(args.png)] if args.png else []):
        if p.parent and not p.parent.exists():
            print(f"clipasso: error: the folder for {p} does not exist; create it first", file=sys.stderr)
            return EXIT_USAGE

    from .optimize import PRESETS

    total = args.iterations if args.iterations is not None else PRESETS[args.preset]["iterations"]
    bar = ProgressBar(total, enabled=not args.quiet)
    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl+C: stop and keep the best so far; second: abort
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nclipasso: stopping after this iteration (Ctrl+C again to abort)...", file=sys.stderr)

    def progress(it, losses, image):
        best = float(torch.nan_to_num(losses["best"], nan=float("inf")).min())
        bar.update(it, best)

    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        old = None
    try:
        extra = {"lr": args.lr} if args.lr is not None else {}
        extra.update(abstraction_cli.sketch_settings(args))
        extra.update(_feature_settings(args))
        if args.loss != "clip":
            extra["loss"] = args.loss
        if args.trace_weight is not None:
            extra["trace_weight"] = args.trace_weight
        if args.reseed is not None:
            extra["reseed_interval"] = args.reseed
        result = sketch(args.input, preset=args.preset, strokes=args.strokes, seeds=args.seeds,
                        iterations=args.iterations, seed=args.seed, device=args.device,
                        clip_model=args.clip_model, clip_pretrained=args.clip_pretrained,
                        clip_weights=args.clip_weights, saliency=args.saliency,
                        saliency_model=args.saliency_model, saliency_weights=args.saliency_weights,
                        saliency_text=args.saliency_text, temperature=args.temperature,
                        use_edges=not args.no_xdog, matting_model=args.matting_model,
                        background_removal=not args.no_background_removal, models_dir=args.models_dir,
                        framing=args.framing, allow_download=not args.offline, callback=progress,
                        should_stop=lambda: stop["requested"], callback_interval=1, **extra)
    except errors as exc:
        bar.close()
        msg = str(exc)
        if "background" in type(exc).__name__.lower() or "Matting" in type(exc).__name__:
            msg += "\n(or run without background removal: --no-background-removal)"
        print(f"clipasso: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    bar.close()

    result.save_svg(out_svg)
    if args.png:
        canvas = max(result.strokes.canvas)  # a stretched sketch comes back with the picture's shape
        result.save_png(args.png, scale=(args.png_size / canvas) if args.png_size else 2.0)
    abstraction_lines = abstraction_cli.write_outputs(result, args)
    run = result.run
    s = result.settings
    lines = [
        f"sketch: {out_svg}" + (f" and {args.png}" if args.png else ""),
        f"  winner: seed {result.seed} (candidate {result.index + 1} of {len(s['seeds'])}), "
        f"loss {result.loss:.4f} at iteration {int(result.strokes.iterations[0])}",
        "  candidates: " + ", ".join(f"seed {sd}: {float(l):.4f}"
                                     for sd, l in zip(result.candidates.seeds, result.candidates.losses)),
        f"  {s['strokes']} strokes, {run.iterations_run}/{s['iterations']} iterations"
        + (" (stopped early)" if run.cancelled else "") + f", preset {s['preset']}, {s['clip_model'] or 'trace loss'} on {s['device']}",
        f"  time: {_fmt_time(result.seconds)} total, {run.seconds_per_iteration:.3f} s/iteration "
        f"for {len(s['seeds'])} seed(s) together",
    ]
    lines += abstraction_lines
    styled = [n.replace("_", " ") for n in ("optimize_width", "optimize_opacity", "color_from_image", "optimize_color")
              if s.get(n)] + ([f"pen {s['pen_width']:g} px"] if s.get("pen_width") else [])
    if s.get("text"):
        lines.append(f"  text guidance: {s['text']!r} (weight {s['text_weight']:g})")
    if styled:
        lines.append("  styled strokes: " + ", ".join(styled))
    lines += [f"  note: {n}" for n in result.notes]
    print("\n".join(lines))
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "download-weights":
        return _download_weights(args)
    if args.command == "report":
        from .report import run_report_cli

        return run_report_cli(args)
    if args.command == "sketch":
        for name in ("strokes", "seeds"):
            v = getattr(args, name)
            if v is not None and v < 1:
                parser.error(f"--{name} must be at least 1")
        if args.iterations is not None and args.iterations < 0:
            parser.error("--iterations must be 0 or more")
        if getattr(args, "reseed", None) is not None and args.reseed < 0:
            parser.error("--reseed must be a number of steps, 0 or more (0 = off)")
        if args.png_size is not None and not 8 <= args.png_size <= 16384:
            parser.error("--png-size must be between 8 and 16384 pixels")
        if args.canvas is not None and not 64 <= args.canvas <= 1024:
            parser.error("--canvas must be between 64 and 1024 pixels (224 is CLIP's input size)")
        if args.pen_width is not None and not (0 < args.pen_width <= 100):
            parser.error("--pen-width must be a line width in canvas pixels, above 0 (3 = CLIPasso's pen)")
        if args.text_weight is not None and not args.text_weight >= 0:
            parser.error("--text-weight must be 0 or more")
        if args.text is not None and not args.text.strip():
            parser.error("--text is empty; give a short description such as \"a cat, side view\"")
        from . import abstraction_cli

        abstraction_cli.check_arguments(args, parser)
        return _sketch(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
