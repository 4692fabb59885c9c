"""Command line: ``clipasso sketch INPUT -o OUT.svg`` (see ``clipasso sketch --help``)."""
from __future__ import annotations

from .errors import ClipassoError

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: stopped by SIGTERM after writing the best sketch so far

EXIT_STATUS_HELP = ("exit status: 0 done (also after one Ctrl+C, which stops and writes the best sketch so far); "
                    "1 an error while working (the message says what to do; --debug shows the traceback); "
                    "2 a bad option or output path, found before any work starts; "
                    f"{EXIT_TERMINATED} stopped by SIGTERM, after writing the best sketch so far. "
                    "Every output is written to a temporary file in its folder and then renamed over the target, "
                    "so an interrupted run never leaves a half-written file nor destroys the previous one.")


class Bound:
    """Documented range of one numeric option: ``low <= value <= high`` (``value > low`` when
    ``low_open``), finite; ``above`` says why larger values are refused."""

    def __init__(self, low, high, unit: str = "", above: str = "", low_open: bool = False):
        self.low, self.high, self.unit, self.above, self.low_open = low, high, unit, above, low_open

    def problem(self, flag: str, value) -> Optional[str]:
        unit = f" {self.unit}" if self.unit else ""
        if not math.isfinite(float(value)):
            return f"{flag} must be a finite number between {self.low:g} and {self.high:g}{unit}; got {value}"
        if value > self.high:
            return (f"{flag} must be at most {self.high:g}{unit}; got {value:g}"
                    + (f" ({self.above})" if self.above else ""))
        if value < self.low or (self.low_open and value <= self.low):
            if self.low_open:
                return f"{flag} must be above {self.low:g} (at most {self.high:g}{unit}); got {value:g}"
            if self.low == 0:
                return f"{flag} must be 0 or more (at most {self.high:g}{unit}); got {value:g}"
            if self.low == 1:
                return f"{flag} must be at least 1 (at most {self.high:g}{unit}); got {value:g}"
            return f"{flag} must be between {self.low:g} and {self.high:g}{unit}; got {value:g}"
        return None


# Every bound of `clipasso sketch` / `clipasso report` in one table (option dest -> Bound), checked
# before any work starts. Keep them together: they are meant to move into the settings as one block.
LIMITS = {
    "strokes": Bound(1, 1024, "strokes", "every stroke is rendered for every seed on every step; 100000 strokes "
                                         "took 7 GB and 5 min for a single iteration"),
    "seeds": Bound(1, 64, "candidates", "all seeds are optimised together as one batch"),
    "strokes_x_seeds": Bound(1, 16384, "strokes in all candidates together",
                             "memory and time per step grow with strokes x seeds; lower --strokes or --seeds"),
    "iterations": Bound(0, 100000, "steps", "the paper uses 2000; stop a long run with Ctrl+C, which keeps the "
                                            "best sketch"),
    "seed": Bound(0, 2**31 - 1 - 1000 * 64, "", "candidates use seed, seed+1000, ..., which must stay a 31-bit seed"),
    "canvas": Bound(64, 1024, "pixels", "224 is CLIP's input; larger canvases only render finer"),
    # 5792^2 is clipasso.raster.MAX_RENDER_PIXELS, the most one render draws (tests/test_cli_bad_inputs.py checks)
    "png_size": Bound(8, 5792, "pixels", "the PNG is rendered in memory: 16384 px took 12 GB; the SVG is vector "
                                         "and scales to any size"),
    "lr": Bound(0, 100, "pixels per step", "a step that large throws the points off the canvas and the sketch "
                                           "never improves on its starting strokes; CLIPasso uses 1.0",
                low_open=True),
    "temperature": Bound(0, 100, "", "the start points become uniformly random long before that", low_open=True),
    "pen_width": Bound(0, 100, "canvas pixels", "3 is CLIPasso's pen", low_open=True),
    "text_weight": Bound(0, 100, "", "1 and more already let the words win over the picture"),
    "trace_weight": Bound(0, 100, "", "the weight is relative to the CLIP loss, which is about 1"),
    "reseed": Bound(0, 100000, "steps", "0 turns re-seeding off"),
    "max_strokes": Bound(2, 1024, "strokes", "as --strokes"),
    "start_strokes": Bound(1, 1023, "strokes", "as --strokes"),
    "prune_iterations": Bound(0, 10000, "steps", "they run after every removed stroke"),
    "grow_iterations": Bound(0, 10000, "steps", "they run after every added stroke"),
}


def limit_problems(args, names=None) -> List[str]:
    """The messages of every option of ``args`` outside its `LIMITS` range (empty when all fit)."""
    out = []
    for name, bound in LIMITS.items():
        if names is not None and name not in names:
            continue
        value = getattr(args, name, None)
        if value is None or name == "strokes_x_seeds":
            continue
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            msg = bound.problem("--" + name.replace("_", "-"), v)
            if msg:
                out.append(msg)
                break
    return out


class OutputPathError(ClipassoError, ValueError):
    """An output path that cannot be written; found before any work starts."""


NAME_MAX = 255


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_paths(outputs, inputs=()) -> None:
    """Raise `OutputPathError` for the first unusable output. ``outputs``: (flag, path, suffixes, hint)
    with ``suffixes`` the accepted extensions (lower case) and ``hint`` what to use instead; ``inputs``:
    paths that no output may overwrite."""
    from .atomic import probe_folder

    seen = []
    probed = set()
    for flag, value, suffixes, hint in outputs:
        if value is None:
            continue
        p = Path(value)
        if len(os.fsencode(p.name)) > NAME_MAX:
            raise OutputPathError(f"{flag}: the file name is too long ({len(os.fsencode(p.name))} bytes, at most "
                                  f"{NAME_MAX}); choose a shorter name")
        if str(value).endswith(("/", os.sep)) or (p.exists() and p.is_dir()):
            raise OutputPathError(f"{flag} names a folder: {value}; give a file name in it, such as "
                                  f"{p / ('sketch' + suffixes[0])}")
        if p.suffix.lower() not in suffixes:
            got = f"'{p.suffix}'" if p.suffix else "no extension"
            raise OutputPathError(f"{flag} must name a {' or '.join(suffixes)} file; got {value} ({got})"
                                  + (f"; {hint}" if hint else ""))
        if p.is_symlink() and not p.exists():
            raise OutputPathError(f"{flag}: {value} is a broken symbolic link; remove it or choose another name")
        if p.exists() and not p.is_file():
            raise OutputPathError(f"{flag}: {value} exists and is not a regular file; choose another name")
        for src in inputs:
            if src is not None and _same_file(p, Path(src)):
                raise OutputPathError(f"{flag} {value} is the input file {src}; writing it would destroy the "
                                      "input: choose another output name")
        for other_flag, other in seen:
            if _same_file(p, other):
                raise OutputPathError(f"{flag} and {other_flag} name the same file {value}; give each output "
                                      "its own name")
        seen.append((flag, p))
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.exists():
            raise OutputPathError(f"the folder for {value} does not exist; create it first")
        if not folder.is_dir():
            raise OutputPathError(f"the folder for {value} ({folder}) is not a folder")
        key = str(folder.resolve())
        if key not in probed:
            try:
                probe_folder(folder)
            except OSError as exc:
                raise OutputPathError(f"{flag}: cannot write to the folder {folder} ({exc.strerror or exc}); "
                                      "choose a folder you can write to") from None
            probed.add(key)


def _print_error(exc: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, MemoryError):
        msg = "out of memory; use fewer --strokes or --seeds, a smaller --canvas or --png-size"
    elif type(exc).__module__ == "builtins" and type(exc).__name__ not in ("ValueError", "RuntimeError"):
        msg = f"{type(exc).__name__}: {msg}"
    print(f"clipasso: error: {msg}" + ("" if debug else "\n(run again with --debug to see the traceback)"),
          file=sys.stderr)


def _add_debug(parser, top: bool = False) -> None:
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="on an error, also print the Python traceback")


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
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sk = sub.add_parser("sketch", help="sketch an image into an SVG (and PNG)",
                        description="Sketch INPUT with CLIPasso and write the winning sketch as SVG (and PNG). "
                                    "Without INPUT the bundled example image is sketched. Every option and output "
                                    "path is checked before any work starts.",
                        epilog=EXIT_STATUS_HELP + " Upper bounds: " + ", ".join(
                            f"--{k.replace('_', '-')} {b.high:g}" for k, b in LIMITS.items()
                            if k != "strokes_x_seeds") + f", strokes x seeds {LIMITS['strokes_x_seeds'].high:g}.")
    _add_debug(sk)
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
    _add_debug(sub.choices["report"])
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
    _add_debug(dl)
    return parser


def _download_weights(args) -> int:
    from .models import MODELS_DIR_ENV, ModelConfigError, WeightsNotFoundError, download_weights

    folder = args.models_dir or (os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep)[0] or None)
    if folder is not None:
        problem = _folder_problem(Path(folder))
        if problem:
            print(f"clipasso: error: --models-dir {folder}: {problem}", file=sys.stderr)
            return EXIT_USAGE
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


def _folder_problem(folder: Path) -> Optional[str]:
    """Why files cannot be put in ``folder`` (created if missing), or None."""
    from .atomic import probe_folder

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


def sketch_path_problem(args, out_svg: Path) -> Optional[str]:
    """The first problem with the input or an output path of `clipasso sketch`, or None."""
    if args.input is not None:
        from .images import ImageError, check_image_path

        try:
            check_image_path(args.input)  # missing, a folder, a link loop, a name too long, ...
        except ImageError as exc:
            msg = str(exc)
            return msg.replace("image file not found", "input image not found", 1) if \
                msg.startswith("image file not found") else msg
    inputs = [p for p in (args.input, args.clip_weights, args.saliency_weights) if p]
    try:
        check_output_paths([
            ("-o", str(out_svg), (".svg",), "-o writes the SVG; a PNG goes to --png OUT.png"),
            ("--png", args.png, (".png",), "--png writes a PNG; the SVG goes to -o OUT.svg"),
            ("--gif", args.gif, (".gif",), ""),
            ("--animated-svg", args.animated_svg, (".svg",), ""),
            ("--curve", args.curve, (".json",), ""),
        ], inputs)
    except OutputPathError as exc:
        return str(exc)
    return None


def _sketch(args) -> int:
    import torch

    from .images import ImageError
    from .models import ModelConfigError, WeightsNotFoundError
    from .pipeline import PipelineError
    from .strokes import StrokeError

    errors = (ImageError, WeightsNotFoundError, ModelConfigError, PipelineError, StrokeError, ValueError,
              FileNotFoundError, RuntimeError)
    try:
        from .matting import MattingError, MattingWeightsNotFoundError
        errors = errors + (MattingError, MattingWeightsNotFoundError)
    except ImportError:  # pragma: no cover - matting is part of the package
        pass

    stem = Path(args.input).stem if args.input else "example"
    out_svg = Path(args.output) if args.output else Path(f"{stem}_sketch.svg")
    problem = sketch_path_problem(args, out_svg)
    if problem:
        print(f"clipasso: error: {problem}", file=sys.stderr)
        return EXIT_USAGE

    from .optimize import PRESETS

    total = args.iterations if args.iterations is not None else PRESETS[args.preset]["iterations"]
    bar = ProgressBar(total, enabled=not args.quiet)
    stop = {"requested": False, "terminated": False}

    def on_sigint(signum, frame):  # first Ctrl+C: stop and keep the best so far; second: abort
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nclipasso: stopping after this iteration (Ctrl+C again to abort)...", file=sys.stderr)

    def on_sigterm(signum, frame):  # as Ctrl+C: stop, write the best sketch so far, then exit 143
        if stop["terminated"]:  # a second SIGTERM (e.g. while a model is still loading): stop now
            raise SystemExit(128 + signal.SIGTERM)
        stop["terminated"] = True
        if not stop["requested"]:
            stop["requested"] = True
            print("\nclipasso: SIGTERM: stopping after this iteration and writing the best sketch so far...",
                  file=sys.stderr)

    def progress(it, losses, image):
        best = float(torch.nan_to_num(losses["best"], nan=float("inf")).min())
        bar.update(it, best)

    old = {}
    for signum, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm)):
        try:
            old[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            pass
    try:
        return _run_and_write(args, out_svg, bar, stop, progress, errors)
    finally:  # the handlers stay until every file is written: a SIGTERM while writing does not cut it short
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _run_and_write(args, out_svg, bar, stop, progress, errors) -> int:
    from . import abstraction_cli
    from .pipeline import sketch

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
    if stop.get("terminated"):
        lines.append(f"  stopped by SIGTERM: the best sketch so far is written (exit status {EXIT_TERMINATED})")
    print("\n".join(lines), flush=True)
    return EXIT_TERMINATED if stop.get("terminated") else EXIT_OK


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


def _dispatch(parser, args) -> int:
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "download-weights":
        return _download_weights(args)
    if args.command == "report":
        from .report import run_report_cli

        return run_report_cli(args)
    if args.command == "sketch":
        problems = limit_problems(args, [n for n in LIMITS if n not in ("max_strokes", "start_strokes",
                                                                        "prune_iterations", "grow_iterations")])
        if problems:
            parser.error(problems[0])
        from .optimize import PRESETS

        seeds = args.seeds if args.seeds is not None else int(PRESETS[args.preset]["seeds"])
        strokes = max(args.strokes or int(PRESETS[args.preset]["strokes"]), args.max_strokes or 0)
        msg = LIMITS["strokes_x_seeds"].problem("strokes x seeds", strokes * seeds)
        if msg:
            parser.error(f"{msg} ({strokes} strokes x {seeds} seeds)")
        if args.text is not None and not args.text.strip():
            parser.error("--text is empty; give a short description such as \"a cat, side view\"")
        from . import abstraction_cli

        abstraction_cli.check_arguments(args, parser)
        return _sketch(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
