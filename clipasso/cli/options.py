"""`clipasso sketch`'s options, generated from the settings (`clipasso.settings`): one flag per field,
grouped by stage, the bounds table and the rules of options that need another; and the progress bar.
`clipasso report` uses the same pieces."""

from __future__ import annotations

import logging
import contextlib
import dataclasses
import math
import signal
import sys
import time
from typing import Callable, Dict, List, Optional


def _limits():
    """Every bound of `clipasso sketch` / `clipasso report`: the settings' own (`clipasso.settings`), the
    strokes x seeds product and the PNG size, which is only the CLI's."""
    from ..settings import STROKES_X_SEEDS, Option, all_fields

    out = {
        f.name: f.metadata["option"]
        for _, f in all_fields()
        if f.metadata["option"].high is not None and f.metadata["option"].above
    }
    out["strokes_x_seeds"] = Option(
        "strokes in all candidates together",
        low=1,
        high=STROKES_X_SEEDS,
        kind="int",
        above="memory and time per step grow with strokes x seeds; lower --strokes or --seeds",
    )
    # 5792^2 is clipasso.render.raster.MAX_RENDER_PIXELS, the most one render draws (tests/cli/test_cli_bad_inputs.py checks)
    out["png_size"] = Option(
        "long side of the PNG",
        low=8,
        high=5792,
        unit="pixels",
        kind="int",
        above="the PNG is rendered in memory: 16384 px took 12 GB; the SVG is vector and scales to any size",
    )
    return out


LIMITS = _limits()


def flag_of(name: str) -> str:
    """The CLI flag of a settings field (``strokes`` -> ``--strokes``, ``use_edges`` -> ``--no-xdog``)."""
    from ..settings import field_option

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
        for v in value if isinstance(value, (list, tuple)) else [value]:
            msg = bound.problem(flag_of(name), v)
            if msg:
                out.append(msg)
                break
    return out


# CLI groups of the settings' stages (clipasso.settings.STAGES), in --help order
STAGE_TITLES = {
    "prepare": "picture on the canvas (framing, background removal)",
    "models": "models",
    "place": "stroke placement (saliency and initialisation)",
    "objective": "loss (geometric, semantic, text guidance, trace)",
    "optimizer": "optimisation (and styled strokes)",
    "select": "seeds, automatic abstraction and drawing order",
}

# Options that only mean something together with another: (needs, value or None for "given").
NEEDS = {
    "max_strokes": ("auto_strokes", None),
    "abstraction_method": ("auto_strokes", None),
    "start_strokes": ("abstraction_method", "grow"),
    "grow_iterations": ("abstraction_method", "grow"),
    "min_gain": ("abstraction_method", "grow"),
    "prune_iterations": ("abstraction_method", "prune"),
    "saliency_text": ("saliency", "clip-relevancy"),
}


def needs_problem(args) -> Optional[str]:
    """An option given without the one it needs (`NEEDS`), or None."""
    from ..settings import field_option

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
    from ..settings import PRESETS

    values = {p: PRESETS[p][name] for p in PRESETS}
    if len(set(map(repr, values.values()))) == 1:
        v = next(iter(values.values()))
        return "" if v is None or isinstance(v, bool) else f" (default {v})"
    return " (default: " + ", ".join(f"{p} {v}" for p, v in values.items()) + ")"


def add_settings_arguments(parser) -> None:
    """One CLI option per settings field (`clipasso.settings`), grouped by stage; every default is None so
    that only what was given overrides the preset."""
    from ..settings import STAGES

    for stage, cls in STAGES:
        group = parser.add_argument_group(STAGE_TITLES[stage])
        for f in dataclasses.fields(cls):
            opt = f.metadata["option"]
            if opt.flag == "":
                continue
            help_text = (opt.off_help if f.default is True and opt.off_help else opt.help).replace("%", "%%") + (
                "" if f.default is True else _preset_note(f.name)
            )
            add_field_argument(group, f, help_text)


def add_field_argument(group, f, help_text: str) -> None:
    """The CLI option of one settings field ``f`` (a dataclass field carrying its `Option`), default None."""
    opt = f.metadata["option"]
    flag = flag_of(f.name)
    if opt.kind == "bool":
        group.add_argument(flag, dest=f.name, action="store_const", const=not f.default, default=None, help=help_text)
        return
    kw = dict(dest=f.name, default=None, help=help_text)
    if opt.metavar:
        kw["metavar"] = opt.metavar
    if opt.choices is not None:
        kw["choices"] = list(opt.choices)
        if opt.canonical is not None:  # an older word (alias) is read as today's before the check
            kw["type"] = opt.canonical
    elif opt.kind in ("int", "float"):
        kw["type"] = int if opt.kind == "int" else float
    if f.name == "models_dir":
        kw["action"] = "append"
        kw["help"] += (
            " (repeatable: all are searched, in order; $CLIPASSO_MODELS_DIR holds folders separated by os.pathsep)"
        )
    group.add_argument(flag, **kw)


def settings_overrides(args) -> dict:
    """The settings fields given on the command line (`add_settings_arguments`), by name."""
    from ..settings import FIELD_STAGE

    return {name: getattr(args, name) for name in FIELD_STAGE if getattr(args, name, None) is not None}


def settings_from_args(args):
    """The `SketchSettings` of a parsed command line, validated (messages name the flags)."""
    from ..settings import SketchSettings

    return SketchSettings.from_preset(args.preset, **settings_overrides(args)).validate(label=flag_of)


def settings_or_usage_error(args, parser):
    """`settings_from_args`, after the command-line rules the settings cannot see (the PNG size, an option
    given without the one it needs, an empty --text); any problem is ``parser.error`` (exit status 2),
    before any work. `clipasso sketch` and `clipasso batch` both start here."""
    from ..settings import SettingsError

    problems = limit_problems(args, ["png_size"])
    if problems:
        parser.error(problems[0])
    problem = needs_problem(args)
    if problem:
        parser.error(problem)
    if args.text is not None and not args.text.strip():
        parser.error('--text is empty; give a short description such as "a cat, side view"')
    try:
        return settings_from_args(args)
    except SettingsError as exc:
        parser.error(str(exc))


@contextlib.contextmanager
def signal_handlers(handlers: Dict[int, Callable]):
    """Install ``{signum: handler}`` for the block (skipped off the main thread, where Python refuses) and put
    the old handlers back after it; a command keeps its handlers until every file is written, so a signal
    while writing does not cut the writing short."""
    old = {}
    for signum, handler in handlers.items():
        try:
            old[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def sigterm_stop(stop: dict, message: str) -> Callable:
    """A SIGTERM handler for a command that writes what it has before it exits 143: the first SIGTERM sets
    ``stop["terminated"]`` (and ``stop["requested"]``) and prints ``message`` unless a stop was already
    asked for; a second one (e.g. while a model is still loading) exits 143 at once."""

    def on_sigterm(signum, frame):
        if stop.get("terminated"):
            raise SystemExit(128 + signal.SIGTERM)
        stop["terminated"] = True
        if not stop.get("requested"):
            stop["requested"] = True
            print(f"\nclipasso: SIGTERM: {message}", file=sys.stderr, flush=True)

    return on_sigterm


def fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class LineHandler(logging.StreamHandler):
    """A log handler that writes to the current ``sys.stderr`` and starts each record on a line of its
    own: on a terminal it clears the progress bar's line first (the bar redraws itself at its next
    update)."""

    def emit(self, record) -> None:
        self.stream = sys.stderr
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\r\x1b[K")
        super().emit(record)


def log_to_stderr(names) -> None:
    """Print what the loggers ``names`` say at INFO and above on stderr, each record on its own line."""
    for name in names:
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = LineHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False  # once, not again through a root handler


def log_compile_to_stderr() -> None:
    """The compiled encoder's lines (clipasso.models.compiled: "compiling once for this machine", why
    it runs eager) on stderr."""
    log_to_stderr(("clipasso.compile",))


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
        line = (
            f"[{bar}] {iteration}/{self.total} {frac * 100:3.0f}% | best loss {best:.4f} | "
            f"{rate:.2f} s/it | ETA {fmt_time(eta)}"
        )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
