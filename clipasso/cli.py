"""Command line: ``clipasso sketch INPUT -o OUT.svg`` (see ``clipasso sketch --help``)."""
from __future__ import annotations

from .errors import ClipassoError

import argparse
import dataclasses
import json
import logging
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


def _limits():
    """Every bound of `clipasso sketch` / `clipasso report`: the settings' own (`clipasso.settings`), the
    strokes x seeds product and the PNG size, which is only the CLI's."""
    from .settings import STROKES_X_SEEDS, Option, all_fields

    out = {f.name: f.metadata["option"] for _, f in all_fields()
           if f.metadata["option"].high is not None and f.metadata["option"].above}
    out["strokes_x_seeds"] = Option("strokes in all candidates together", low=1, high=STROKES_X_SEEDS, kind="int",
                                    above="memory and time per step grow with strokes x seeds; lower --strokes or "
                                          "--seeds")
    # 5792^2 is clipasso.raster.MAX_RENDER_PIXELS, the most one render draws (tests/test_cli_bad_inputs.py checks)
    out["png_size"] = Option("long side of the PNG", low=8, high=5792, unit="pixels", kind="int",
                             above="the PNG is rendered in memory: 16384 px took 12 GB; the SVG is vector and scales "
                                   "to any size")
    return out


LIMITS = _limits()


def flag_of(name: str) -> str:
    """The CLI flag of a settings field (``strokes`` -> ``--strokes``, ``use_edges`` -> ``--no-xdog``)."""
    from .settings import field_option

    try:
        flag = field_option(name).flag
    except KeyError:
        flag = None
    return flag or "--" + name.replace("_", "-")


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
            msg = bound.problem(flag_of(name), v)
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


# CLI groups of the settings' stages (clipasso.settings.STAGES), in --help order
STAGE_TITLES = {"prepare": "picture on the canvas (framing, background removal)", "models": "models",
                "place": "stroke placement (saliency and initialisation)",
                "objective": "loss (geometric, semantic, text guidance, trace)",
                "optimizer": "optimisation (and styled strokes)",
                "select": "seeds, automatic abstraction and drawing order"}

# Options that only mean something together with another: (needs, value or None for "given").
NEEDS = {"max_strokes": ("auto_strokes", None), "abstraction_method": ("auto_strokes", None),
         "start_strokes": ("abstraction_method", "grow"), "grow_iterations": ("abstraction_method", "grow"),
         "min_gain": ("abstraction_method", "grow"), "prune_iterations": ("abstraction_method", "prune"),
         "saliency_text": ("saliency", "clip-relevancy")}


def needs_problem(args) -> Optional[str]:
    """An option given without the one it needs (`NEEDS`), or None."""
    from .settings import field_option

    for name, (parent, value) in NEEDS.items():
        mine = getattr(args, name, None)
        if mine is None:
            continue
        flag = flag_of(name) + (f" {mine}" if field_option(name).choices is not None else "")
        given = getattr(args, parent, None)
        meta = field_option(parent).metavar or ""
        if value is None:
            if given is None:
                return f"{flag} needs {flag_of(parent)} {meta}".rstrip()
            continue
        if parent == "abstraction_method":
            if args.auto_strokes is None:
                return f"{flag} needs {flag_of(parent)} {value} (with --auto-strokes FIDELITY)"
            if (given or "prune") != value:
                if value == "prune":
                    return f"{flag} is for {flag_of(parent)} prune; growing uses --grow-iterations"
                return f"{flag} needs {flag_of(parent)} {value}"
        elif given != value:
            return f"{flag} needs {flag_of(parent)} {value}"
    return None


def _preset_note(name: str) -> str:
    from .settings import PRESETS

    values = {p: PRESETS[p][name] for p in PRESETS}
    if len(set(map(repr, values.values()))) == 1:
        v = next(iter(values.values()))
        return "" if v is None or isinstance(v, bool) else f" (default {v})"
    return " (default: " + ", ".join(f"{p} {v}" for p, v in values.items()) + ")"


def add_settings_arguments(parser) -> None:
    """One CLI option per settings field (`clipasso.settings`), grouped by stage; every default is None so
    that only what was given overrides the preset."""
    from .settings import STAGES

    for stage, cls in STAGES:
        group = parser.add_argument_group(STAGE_TITLES[stage])
        for f in dataclasses.fields(cls):
            opt = f.metadata["option"]
            if opt.flag == "":
                continue
            flag = flag_of(f.name)
            help_text = (opt.off_help if f.default is True and opt.off_help else opt.help).replace("%", "%%") \
                + ("" if f.default is True else _preset_note(f.name))
            if opt.kind == "bool":
                group.add_argument(flag, dest=f.name, action="store_const", const=not f.default, default=None,
                                   help=help_text)
                continue
            kw = dict(dest=f.name, default=None, help=help_text)
            if opt.metavar:
                kw["metavar"] = opt.metavar
            if opt.choices is not None:
                kw["choices"] = list(opt.choices)
            elif opt.kind in ("int", "float"):
                kw["type"] = int if opt.kind == "int" else float
            if f.name == "models_dir":
                kw["action"] = "append"
                kw["help"] += " (repeatable: all are searched, in order; $CLIPASSO_MODELS_DIR holds folders " \
                              "separated by os.pathsep)"
            group.add_argument(flag, **kw)


def settings_overrides(args) -> dict:
    """The settings fields given on the command line (`add_settings_arguments`), by name."""
    from .settings import FIELD_STAGE

    return {name: getattr(args, name) for name in FIELD_STAGE if getattr(args, name, None) is not None}


def settings_from_args(args):
    """The `SketchSettings` of a parsed command line, validated (messages name the flags)."""
    from .settings import SketchSettings

    return SketchSettings.from_preset(args.preset, **settings_overrides(args)).validate(label=flag_of)


def build_parser() -> argparse.ArgumentParser:
    from .settings import PRESET_HELP, PRESET_NAMES

    parser = argparse.ArgumentParser(
        prog="clipasso", description="CLIPasso: turn a picture of an object into an abstract sketch of a few strokes.")
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sk = sub.add_parser("sketch", help="sketch an image into an SVG (and PNG)",
                        description="Sketch INPUT with CLIPasso and write the winning sketch as SVG (and PNG). "
                                    "Without INPUT the bundled example image is sketched. Every option and output "
                                    "path is checked before any work starts. The options are the settings of "
                                    "clipasso.settings (the same as the Python API's and the nodes').",
                        epilog=EXIT_STATUS_HELP + " Upper bounds: " + ", ".join(
                            f"{flag_of(k)} {b.high:g}" for k, b in LIMITS.items()
                            if k != "strokes_x_seeds") + f", strokes x seeds {LIMITS['strokes_x_seeds'].high:g}.")
    _add_debug(sk)
    sk.add_argument("input", nargs="?", metavar="INPUT", help="image file (PNG, JPEG, WebP, ...); default: bundled example")
    sk.add_argument("-o", "--output", metavar="OUT.svg", help="SVG to write (default: <input name>_sketch.svg)")
    sk.add_argument("--png", metavar="OUT.png", help="also write a PNG of the sketch (2x the canvas, 448 px, unless --png-size)")
    sk.add_argument("--png-size", type=int, metavar="N",
                    help="long side of the PNG in pixels (default 2x the canvas); the sketch is vector, any size is sharp")
    sk.add_argument("--preset", choices=list(PRESET_NAMES), default="paper", help=PRESET_HELP)
    add_settings_arguments(sk)
    out = sk.add_argument_group("drawing outputs")
    out.add_argument("--gif", metavar="OUT.gif", help="write an animated GIF of the drawing being made (implies --order)")
    out.add_argument("--animated-svg", metavar="OUT.svg",
                     help="write an animated SVG, strokes drawn one after another (implies --order)")
    out.add_argument("--curve", metavar="OUT.json",
                     help="write the loss-versus-strokes curve (and the drawing order's prefix losses) as JSON")
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


def _sketch(args, settings) -> int:
    import torch

    from .errors import ClipassoError

    # every engine error derives from ClipassoError; torch and the OS raise the others
    errors = (ClipassoError, ValueError, FileNotFoundError, RuntimeError)

    stem = Path(args.input).stem if args.input else "example"
    out_svg = Path(args.output) if args.output else Path(f"{stem}_sketch.svg")
    problem = sketch_path_problem(args, out_svg)
    if problem:
        print(f"clipasso: error: {problem}", file=sys.stderr)
        return EXIT_USAGE

    total = settings.iterations
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
        return _run_and_write(args, settings, out_svg, bar, stop, progress, errors)
    finally:  # the handlers stay until every file is written: a SIGTERM while writing does not cut it short
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _run_and_write(args, settings, out_svg, bar, stop, progress, errors) -> int:
    from .pipeline import sketch

    if (settings.auto_strokes is not None or settings.drawing_order) and not args.quiet:
        _log_stages_to_stderr()
    try:
        result = sketch(args.input, settings.replace(callback_interval=1), callback=progress,
                        should_stop=lambda: stop["requested"])
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


def _log_stages_to_stderr() -> None:
    """Show the progress of automatic abstraction and drawing order (their loggers) on stderr."""
    for name in ("clipasso.abstraction", "clipasso.order"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)


def _drawing_outputs(result, args) -> List[str]:
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
        problems = limit_problems(args, ["png_size"])
        if problems:
            parser.error(problems[0])
        if args.gif or args.animated_svg:
            args.drawing_order = True  # an animation of the drawing needs its order
        for flag, value, suffix in (("--gif", args.gif, ".gif"), ("--animated-svg", args.animated_svg, ".svg"),
                                    ("--curve", args.curve, ".json")):
            if value is not None and Path(value).suffix.lower() != suffix:
                parser.error(f"{flag} must name a {suffix} file; got {value}")
            if value is not None and not Path(value).parent.exists():
                parser.error(f"the folder for {value} does not exist; create it first")
        problem = needs_problem(args)
        if problem:
            parser.error(problem)
        if args.text is not None and not args.text.strip():
            parser.error("--text is empty; give a short description such as \"a cat, side view\"")
        if args.curve and args.auto_strokes is None and not args.drawing_order:
            parser.error("--curve needs --auto-strokes or --order (there is no curve to write otherwise)")
        from .settings import SettingsError

        try:
            settings = settings_from_args(args)
        except SettingsError as exc:
            parser.error(str(exc))
        return _sketch(args, settings)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
