"""The CLIP encoder's training step compiled with ``torch.compile`` (inductor), once per machine.

The optimiser spends most of its time in one function: the loss encoder's forward pass over the
rendered views plus the backward pass to the views (``CLIPassoLoss._features`` with gradients). This
module compiles exactly that function, keeps inductor's caches in a folder that outlives the process,
and decides when compiling pays:

- ``compile`` setting (`COMPILE_MODES`): ``on`` compiles the loss encoder's training step; ``off`` is
  the eager path (fixed-seed references run with it, bit for bit); ``auto`` (the default) compiles when
  inductor works here and the run is long enough to pay the compile back, counting a warm cache as
  the cheap start it is (`CompileEncoder` in `clipasso.optimize.policies` decides after timing the first
  eager steps).
- The cache (`cache_dir`): ``$CLIPASSO_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/clipasso/compiled``, else
  ``~/.cache/clipasso/compiled``; inductor's and triton's caches live under it, so the CLI, a batch's
  local and Ray workers on one machine and ComfyUI share one compile. Compiled kernels are shared
  libraries that torch loads, so the folder must be the user's own: one that others can write to is
  refused (the run goes on eager and says why). A ``TORCHINDUCTOR_CACHE_DIR`` the user chose is
  respected (`user_inductor_dir`; torch's own /tmp default is not a choice).
- The ledger (``ledger.json`` in that folder): per machine, torch version, model, precision and batch
  shape, the measured compile time (cold and warm) and step times (eager and compiled). `auto` decides
  from it; without a measurement it uses `DEFAULT_SPEEDUP` / `DEFAULT_COMPILE_S` (docs/benchmarks.md).
- Shapes: the batch is kept static (``dynamic=False``). The seed trial halves it once and the eval
  pass runs without gradients (eager), so a run compiles at most one shape per batch size it trains at;
  a dynamic batch measured slower to compile on this project's CPU (about 200 s against 72 s per shape)
  for the same step time (a probe with torch.compile(dynamic=True), this project's CPU).
- Failure is never an error: no C++ compiler (a Windows ComfyUI portable), no triton on CUDA, an
  inductor error: the step runs eager from then on and one line (logger ``clipasso.compile``, which the
  CLI prints and the nodes show as progress text) says why.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import platform
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from ..device import COMPILE_MODES

log = logging.getLogger("clipasso.compile")

ENV_CACHE = "CLIPASSO_COMPILE_CACHE"
LEDGER_NAME = "ledger.json"
# The inductor cache folders this module pointed torch at (told apart from one the user chose).
_OURS: set = set()

# Speed-up of the compiled training step over eager (eager / compiled step time) where this machine has
# no measurement of its own yet, by (device type, autocast dtype; None = fp32). Measured with
# bench/compile.py (RN101, 224 px; docs/benchmarks.md#compiled-encoder-step): fp32 on a 2-core AMD EPYC
# without avx512, 1.04-1.16x by batch shape, on a 2-core Intel Xeon with AMX 1.20-1.25x (1.08 taken); bf16
# on a 2-core EPYC with avx512_bf16 1.49x (issue 27), on the Xeon with AMX 1.36-1.39x at the `fast`
# preset's shapes and 1.86x at `paper`'s (1.37 taken). CUDA is not measured yet (bench/gpu_check.sh
# measures it when a GPU is lent): without a figure `auto` does not compile a cold cache there.
DEFAULT_SPEEDUP: Dict[Tuple[str, Optional[torch.dtype]], float] = {("cpu", None): 1.08, ("cpu", torch.bfloat16): 1.37}
# Seconds of a first (cold) compile of one batch shape, where the ledger has none: 68-77 s for RN101 on
# both CPUs above. A warm start (inductor's caches on disk) measured 5.4-11 s.
DEFAULT_COMPILE_S = {"cpu": 75.0, "cuda": 60.0}
DEFAULT_WARM_S = 6.0

# Steps compiled in this process: (the encoder's identity, ledger key). torch.compile keeps what it built
# in memory, and a new loss on the same encoder (a batch's next picture, ComfyUI's next run, a video's
# next frame) reuses it with no new trace (measured on the tiny RN: 0.04 s against 35 s for the first
# call), so `auto` counts such a step as free and the ledger's warm start is not overwritten by it.
_COMPILED_HERE: set = set()
# How many compiled variants of the step one process keeps (`CompiledStep._run`).
RECOMPILE_LIMIT = 64


# --------------------------------------------------------------------------- runs still to come

_RUNS_AHEAD: "contextvars.ContextVar[int]" = contextvars.ContextVar("clipasso_compile_runs_ahead", default=1)


@contextlib.contextmanager
def runs_ahead(count: int):
    """Within the block, `auto` counts ``count`` runs of the same step still to come in this process,
    this one included (the batch's pictures left): one compile serves them all, so it pays sooner."""
    token = _RUNS_AHEAD.set(max(1, int(count)))
    try:
        yield
    finally:
        _RUNS_AHEAD.reset(token)


def expected_runs() -> int:
    """Runs of the step still to come in this process, this one included (`runs_ahead`; 1 outside it)."""
    return _RUNS_AHEAD.get()


# --------------------------------------------------------------------------- the cache folder


def cache_dir() -> Path:
    """The folder of the compile caches and the ledger (see the module docstring); not created here."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clipasso" / "compiled"


def _own_folder(folder: Path) -> Optional[str]:
    """Create ``folder`` (mode 0700) if missing; a reason it must not hold compiled code, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.stat()
    except OSError as exc:
        return (
            f"cannot create the compile cache {folder} ({exc.strerror or exc}); set ${ENV_CACHE} to a folder of yours"
        )
    if os.name == "posix":
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return f"the compile cache {folder} belongs to another user; set ${ENV_CACHE} to a folder of yours"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return (
                f"the compile cache {folder} can be written by other users, and compiled code is loaded from it; "
                f"run 'chmod go-w {folder}' or set ${ENV_CACHE} to a folder of yours"
            )
    return None


def user_inductor_dir() -> Optional[str]:
    """``$TORCHINDUCTOR_CACHE_DIR`` when the user chose it; None when it is unset, torch's own default
    (which torch writes into the environment the first time it asks, often while being imported: a
    folder under /tmp that a reboot empties) or one this module set."""
    value = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not value or os.path.abspath(value) in _OURS:
        return None
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        if os.path.abspath(value) == os.path.abspath(default_cache_dir()):
            return None
    except Exception:  # pragma: no cover - another torch layout: take the value as the user's
        pass
    return value


def use_cache_dir() -> Tuple[Optional[Path], Optional[str]]:
    """Point inductor's and triton's caches into `cache_dir` (unless the user chose inductor's own folder:
    `user_inductor_dir`); returns (folder, None) or (None, why compiled code must not be cached there)."""
    folder = cache_dir()
    problem = _own_folder(folder)
    if problem:
        return None, problem
    if user_inductor_dir() is None:
        ours = str((folder / "inductor").absolute())
        _OURS.add(ours)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = ours
    triton = os.environ.get("TRITON_CACHE_DIR")
    if not triton or os.path.abspath(triton) in _OURS:
        ours = str((folder / "triton").absolute())
        _OURS.add(ours)
        os.environ["TRITON_CACHE_DIR"] = ours
    return folder, None


# --------------------------------------------------------------------------- can this machine compile?


def compiler_problem(device: torch.device) -> Optional[str]:
    """Why inductor cannot compile for ``device`` here (None: it can): torch.compile unsupported on
    this Python, no C++ compiler for CPU code, no triton for CUDA, another device type."""
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return f"torch.compile does not support Python {platform.python_version()} with torch {torch.__version__}"
    except Exception as exc:  # an import error of torch's compiler stack
        return f"torch.compile is unavailable ({type(exc).__name__}: {exc})"
    kind = device.type
    if kind == "cpu":
        try:
            from torch._inductor import cpp_builder

            compiler = cpp_builder.get_cpp_compiler()
        except Exception as exc:
            return f"no C++ compiler for inductor's CPU code ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        if not (os.path.isfile(compiler) or shutil.which(compiler)):
            return f"no C++ compiler for inductor's CPU code ({compiler!r} not found)"
        return None
    if kind == "cuda":
        try:
            from torch.utils._triton import has_triton
        except Exception:  # pragma: no cover - very old torch
            return "triton is not available for CUDA code"
        return None if has_triton() else "triton is not installed (inductor needs it for CUDA code)"
    return f"compiling for {kind} is not supported (CPU and CUDA are)"


# --------------------------------------------------------------------------- the ledger


def machine_key(device: torch.device) -> str:
    """This machine as the ledger names it: device kind and model, torch version."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return f"{device.type}|{name}|torch {torch.__version__}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Ledger:
    """What compiling cost and bought on this machine, per step key (a JSON file in the cache folder).
    Entries: ``compile_s`` (first compile), ``warm_s`` (start from a warm cache), ``eager_step_s``,
    ``compiled_step_s``. Written atomically; a damaged file is read as empty (and rewritten)."""

    def __init__(self, folder: Optional[Path]):
        self.path = None if folder is None else Path(folder) / LEDGER_NAME

    def read(self) -> Dict[str, Dict[str, float]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Dict[str, float]:
        entry = self.read().get(key)
        return dict(entry) if isinstance(entry, dict) else {}

    def update(self, key: str, **values: float) -> None:
        if self.path is None or not self.path.parent.is_dir():  # no folder: nothing was compiled here
            return
        from ..atomic import write_text_atomic

        data = self.read()
        entry = data.get(key) if isinstance(data.get(key), dict) else {}
        entry.update({k: round(float(v), 4) for k, v in values.items()})
        data[key] = entry
        try:
            write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only cache still compiles; it just forgets
            log.debug("could not write the compile ledger %s: %s", self.path, exc)

    def cold_compile_s(self, prefix: str, device_type: str) -> float:
        """The longest first compile this ledger saw for keys starting with ``prefix`` (same machine and
        model), else `DEFAULT_COMPILE_S`."""
        seen = [e.get("compile_s") for k, e in self.read().items() if k.startswith(prefix) and isinstance(e, dict)]
        seen = [float(v) for v in seen if isinstance(v, (int, float))]
        return max(seen) if seen else DEFAULT_COMPILE_S.get(device_type, DEFAULT_COMPILE_S["cpu"])


# --------------------------------------------------------------------------- the compiled step


class CompiledStep:
    """``fn`` (images -> tuple of tensors) compiled with inductor on first use per input shape, with
    gradients, once `enable` switched it on; it falls back to ``fn`` for good (one log line saying why)
    when compiling is impossible here or fails.

    ``key_prefix`` names the step in the ledger (machine, model, precision, layers); the input shape is
    added (`key`). ``compile_seconds``: what each shape's first compiled call took."""

    def __init__(
        self, fn: Callable, device: torch.device, key_prefix: str, mode: Optional[str] = None, identity: Any = None
    ):
        self.mode = mode  # torch.compile's mode (None: inductor's default; benchmarks try others)
        self.fn = fn
        self.identity = identity  # what torch.compile's in-memory cache is keyed on (the encoder), if known
        self.device = device
        self.key_prefix = key_prefix
        self.enabled = False
        self.failed: Optional[str] = None
        self.compile_seconds: Dict[Tuple[int, ...], float] = {}
        self._compiled = None
        self.ledger = Ledger(cache_dir())  # read only until something is compiled

    def problem(self) -> Optional[str]:
        """Why this step cannot be compiled here (the cache folder, the compiler), or None. Creates the
        cache folder and points inductor at it."""
        folder, why = use_cache_dir()
        self.ledger = Ledger(folder)
        return why or compiler_problem(self.device)

    def enable(self) -> bool:
        """Compile from the next call on; False (and one log line) where that is impossible here."""
        if self.failed is None and not self.enabled:
            why = self.problem()
            if why:
                self._fail(why)
            else:
                self.enabled = True
        return self.enabled

    def _fail(self, why: str) -> None:
        self.enabled = False
        if self.failed is None:
            self.failed = why
            log.warning("clipasso: compile: the encoder runs eager: %s", why)

    def key(self, shape) -> str:
        return f"{self.key_prefix}|{'x'.join(str(int(n)) for n in shape)}"

    def _here(self, shape) -> Optional[tuple]:
        return None if self.identity is None else (self.identity, self.key(shape))

    def expected_compile_s(self, shape) -> Tuple[float, bool]:
        """(seconds a compile of ``shape`` should take, whether this machine's cache holds it already)."""
        if tuple(shape) in self.compile_seconds or self._here(shape) in _COMPILED_HERE:
            return 0.0, True
        entry = self.ledger.get(self.key(shape))
        if "compile_s" in entry:
            return float(entry.get("warm_s", DEFAULT_WARM_S)), True
        return self.ledger.cold_compile_s(self.key_prefix, self.device.type), False

    def _run(self, x: torch.Tensor):
        # Every loss's step is the same Python function to torch.compile, so each encoder x batch shape x
        # precision x graph seen in a process is one more entry of that function's cache. torch's default
        # limit (8) is soon reached in a long ComfyUI session, and past it torch silently runs eager: the
        # limit is raised for these calls only (a patch, restored after: other models keep theirs).
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return self._compiled(x)

    def __call__(self, x: torch.Tensor):
        if not self.enabled:
            return self.fn(x)
        shape = tuple(x.shape)
        if shape in self.compile_seconds:
            return self._run(x)
        here = self._here(shape) in _COMPILED_HERE
        seconds, warm = self.expected_compile_s(shape)
        if here:
            pass  # compiled earlier in this process: torch.compile's memory serves it, nothing to say
        elif warm:
            log.info(
                "clipasso: compile: loading the compiled encoder (batch %d) from this machine's cache (about %.0f s)",
                shape[0],
                seconds,
            )
        else:
            log.info(
                "clipasso: compile: compiling the encoder once for this machine (batch %d, about %.0f s; "
                "later runs load it in seconds)",
                shape[0],
                seconds,
            )
        t0 = time.perf_counter()
        quiet = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on every CPU
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=False, mode=self.mode)
            out = self._run(x)
        except Exception as exc:  # inductor failed here: eager from now on, never an error
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self._fail(f"torch.compile failed ({type(exc).__name__}: {first[:300]})")
            return self.fn(x)
        finally:
            quiet.setLevel(level)
        took = time.perf_counter() - t0
        self.compile_seconds[shape] = took
        if not here:
            self.ledger.update(self.key(shape), **({"warm_s": took} if warm else {"compile_s": took}))
            if self.identity is not None:
                _COMPILED_HERE.add(self._here(shape))
        return out


def speedup(ledger: Ledger, key: str, device_type: str, amp_dtype: Optional[torch.dtype]) -> Optional[float]:
    """Measured eager/compiled step-time ratio for ``key`` on this machine, else the default for the
    device and autocast dtype (None = fp32) (None: unknown, `auto` then does not compile a cold cache)."""
    entry = ledger.get(key)
    if entry.get("eager_step_s") and entry.get("compiled_step_s"):
        return float(entry["eager_step_s"]) / float(entry["compiled_step_s"])
    return DEFAULT_SPEEDUP.get((device_type, amp_dtype))


__all__ = [
    "COMPILE_MODES",
    "CompiledStep",
    "Ledger",
    "cache_dir",
    "compiler_problem",
    "expected_runs",
    "machine_key",
    "runs_ahead",
    "speedup",
    "use_cache_dir",
]
