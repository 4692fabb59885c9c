"""Sketch a folder or a dataset: many pictures with one settings value, a manifest, and resume.

    result = sketch_many(["photos/"], "sketches/", SketchSettings.from_preset("fast"), png=True)

Every picture becomes ``OUT_DIR/<its path relative to the folder it was found in>.svg`` (and ``.png``),
written atomically, and one JSON line in ``OUT_DIR/manifest.jsonl``: the input, the outputs, the
status (``ok``, ``error`` or ``skipped``), the loss, seed and iterations of the winner, the seconds it
took, the error message, and a hash of the settings. A broken picture is recorded and the batch goes
on. Resume is the default: a picture whose outputs exist and whose last manifest line says ``ok`` with
the same settings hash is skipped (``force=True`` redoes it); a picture stopped before its last
iteration is recorded as an error, so the next run redoes it.

The models are loaded once for the batch (`clipasso.models.load_clip` and the matting sessions are
cached per process). ``engine="ray"`` runs the pictures as Ray tasks on actors that each load the
models once (`clipasso.batch.ray_engine`); the driver writes every output and manifest line, so the
workers need no shared disk, and a worker that dies costs at most a retry of the picture it held
(``ray_tries``).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ClipassoError
from ..settings import SketchSettings

MANIFEST = "manifest.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
ENGINES = ("local", "ray")
RAY_TRIES = 3  # default tries per picture on Ray: a picture whose worker died this many times is an error
# settings that change where or how visibly a sketch is made, not the sketch: left out of the hash
NOT_HASHED = ("models_dir", "allow_download", "callback_interval", "device")


class BatchError(ClipassoError, ValueError):
    """A batch that cannot start: its inputs, outputs or engine; the message says what to change."""


@dataclass(frozen=True)
class Item:
    """One picture of a batch: where it is and the name its outputs get (relative, no suffix)."""

    path: Path
    name: str

    def outputs(self, out_dir: Path, png: bool) -> List[Path]:
        base = out_dir / self.name
        return [base.with_name(base.name + ".svg")] + ([base.with_name(base.name + ".png")] if png else [])


@dataclass
class BatchResult:
    out_dir: Path
    manifest: Path
    lines: List[dict] = field(default_factory=list)  # this run's manifest lines, in the order written
    seconds: float = 0.0
    stopped: bool = False

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line["status"] == status)

    @property
    def failed(self) -> int:
        return self.count("error")

    def summary(self) -> str:
        return (
            f"{len(self.lines)} picture(s): {self.count('ok')} sketched, {self.count('skipped')} already done, "
            f"{self.failed} failed, in {self.seconds:.1f} s" + (" (stopped early)" if self.stopped else "")
        )


# --------------------------------------------------------------------------- inputs


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_inputs(inputs: Sequence, recursive: bool = False) -> List[Item]:
    """The pictures of ``inputs``: files, folders (their pictures; with ``recursive`` also those of their
    sub-folders) and glob patterns. A folder's pictures keep their path relative to it; a file or a glob
    match keeps its own name. Refuses (`BatchError`) what does not exist, an empty batch and two pictures
    that would write the same outputs."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    items: List[Item] = []
    for given in inputs:
        text = os.fspath(given)
        path = Path(text).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and _is_image(p))
            items += [Item(p.resolve(), p.relative_to(path).with_suffix("").as_posix()) for p in found]
        elif path.is_file():
            items.append(Item(path.resolve(), path.stem))
        elif glob.has_magic(text):
            found = sorted(
                Path(p)
                for p in glob.glob(os.path.expanduser(text), recursive=recursive)
                if os.path.isfile(p) and _is_image(Path(p))
            )
            if not found:
                raise BatchError(f"the pattern {text} matches no picture ({', '.join(IMAGE_SUFFIXES)})")
            items += [Item(p.resolve(), p.stem) for p in found]
        else:
            raise BatchError(f"input not found: {text}; give picture files, folders or glob patterns")
    if not items:
        raise BatchError(
            "no picture to sketch in "
            + ", ".join(os.fspath(i) for i in inputs)
            + (" (sub-folders are searched with --recursive)" if not recursive else "")
        )
    seen: Dict[str, Path] = {}
    for item in items:
        other = seen.get(item.name.lower())
        if other is not None and other != item.path:
            raise BatchError(
                f"{other} and {item.path} would both be written as {item.name}.svg; give their "
                "folders instead (paths inside a folder keep pictures apart) or rename one"
            )
        seen[item.name.lower()] = item.path
    unique, done = [], set()
    for item in items:  # the same file given twice is sketched once
        if item.name.lower() not in done:
            done.add(item.name.lower())
            unique.append(item)
    return unique


# --------------------------------------------------------------------------- manifest


def settings_hash(settings: SketchSettings) -> str:
    """A short hash of everything in ``settings`` that changes the sketch (not its device or model folders)."""
    values = {k: v for k, v in settings.to_dict().items() if k not in NOT_HASHED}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_manifest(path: Path) -> Dict[str, dict]:
    """The last line written for each input (a torn last line, from a killed run, is ignored)."""
    last: Dict[str, dict] = {}
    if not path.is_file():
        return last
    with open(path, encoding="utf-8") as f:
        for raw in f:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict) and "input" in line:
                last[line["input"]] = line
    return last


def _append(path: Path, line: dict) -> None:
    """One JSON line, flushed to disk (a line torn by a killed run is closed first, so it stays alone)."""
    torn = False
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(("\n" if torn else "") + json.dumps(line, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _done(previous: Optional[dict], digest: str, outputs: List[Path]) -> bool:
    return (
        previous is not None
        and previous.get("status") in ("ok", "skipped")
        and previous.get("settings_hash") == digest
        and all(p.is_file() for p in outputs)
    )


# --------------------------------------------------------------------------- one picture


def sketch_file(
    path, settings: SketchSettings, png_size: Optional[int] = None, png: bool = False, callback=None, should_stop=None
) -> dict:
    """Sketch one picture file; returns the SVG text, the PNG bytes when asked (``png_size``: its long side,
    default 2x the canvas, as `clipasso sketch --png`), and the winner's figures. Errors come back as
    ``{"error": ...}``: the batch records them and goes on."""
    from ..pipeline import sketch

    start = time.perf_counter()
    try:
        result = sketch(path, settings, callback=callback, should_stop=should_stop)
    except Exception as exc:  # noqa: BLE001 - recorded in the manifest; the batch goes on
        msg = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, ClipassoError):
            msg = f"{type(exc).__name__}: {msg}"
        return {"error": msg, "seconds": time.perf_counter() - start}
    out = {
        "svg": result.svg(),
        "loss": result.loss,
        "seed": result.seed,
        "iterations": int(result.run.iterations_run),
        "cancelled": bool(result.run.cancelled),
        "strokes": int(result.strokes.num_strokes),
    }
    if png:
        from ..prepare.images import to_pil

        buf = io.BytesIO()
        to_pil(result.render(scale=(png_size / max(result.strokes.canvas)) if png_size else 2.0)).save(
            buf, format="PNG"
        )
        out["png"] = buf.getvalue()
    out["seconds"] = time.perf_counter() - start
    return out


def sketch_bytes(data: bytes, suffix: str, settings: SketchSettings, **options) -> dict:
    """`sketch_file` of a picture given as file bytes (what a Ray worker receives from the driver)."""
    with tempfile.TemporaryDirectory(prefix="clipasso-batch-") as tmp:
        path = Path(tmp) / f"picture{suffix}"
        path.write_bytes(data)
        out = sketch_file(path, settings, **options)
    if "error" in out:
        out["error"] = out["error"].replace(str(path), "the picture")
    return out


def _record(item: Item, outcome: dict, out_dir: Path, png: bool, digest: str) -> dict:
    """Write one picture's outputs (atomically) and return its manifest line."""
    from ..atomic import atomic_open, write_text_atomic

    outputs = item.outputs(out_dir, png)
    line = {
        "input": str(item.path),
        "name": item.name,
        "outputs": [str(p) for p in outputs],
        "settings_hash": digest,
        "seconds": round(float(outcome.get("seconds", 0.0)), 3),
        "loss": None,
        "seed": None,
        "iterations": None,
        "error": None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if "error" in outcome:
        line.update(status="error", error=outcome["error"])
        return line
    if outcome.get("cancelled"):
        line.update(
            status="error",
            error=f"stopped after {outcome['iterations']} iterations, before the end; run the batch again to redo it",
        )
        return line
    try:
        outputs[0].parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(outputs[0], outcome["svg"])
        if png:
            with atomic_open(outputs[1], "wb") as f:
                f.write(outcome["png"])
    except OSError as exc:
        line.update(status="error", error=f"cannot write {outputs[0].parent}: {exc.strerror or exc}")
        return line
    loss = float(outcome["loss"])
    line.update(
        status="ok",
        loss=loss if math.isfinite(loss) else None,
        seed=int(outcome["seed"]),
        iterations=int(outcome["iterations"]),
    )
    return line


# --------------------------------------------------------------------------- the batch


def sketch_many(
    inputs,
    out_dir,
    settings: Optional[SketchSettings] = None,
    engine: str = "local",
    *,
    png: bool = False,
    png_size: Optional[int] = None,
    force: bool = False,
    recursive: bool = False,
    on_item: Optional[Callable[[int, int, dict], None]] = None,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    ray_address: Optional[str] = None,
    workers: Optional[int] = None,
    ray_tries: int = RAY_TRIES,
    **overrides,
) -> BatchResult:
    """Sketch every picture of ``inputs`` into ``out_dir`` (see the module docstring).

    settings: a `SketchSettings` (default: the ``preset`` override's, else "paper"), with ``overrides`` by
    field name as `clipasso.sketch` takes them. engine: "local" (this process) or "ray" (``ray_address``:
    an existing cluster, else a local Ray; ``workers``: actors, default one per GPU, else one per CPU;
    ``ray_tries``: a Ray worker that dies costs the picture it held a try on another or restarted worker,
    and a picture whose worker died that many times is recorded as an error naming Ray's cause).
    on_item(done, total, line) after each picture; callback(iteration, losses, render) follows the
    current picture's optimisation (local engine); should_stop() is checked between pictures and inside
    the current one (a stopped picture is recorded as an error, so resume redoes it).
    """
    t0 = time.perf_counter()
    if engine not in ENGINES:
        raise BatchError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if isinstance(ray_tries, bool) or not isinstance(ray_tries, int) or ray_tries < 1:
        raise BatchError(
            f"ray_tries must be a whole number of at least 1 (tries per picture when its Ray worker "
            f"dies); got {ray_tries!r}"
        )
    if settings is None:
        settings = SketchSettings.from_preset(overrides.pop("preset", None) or "paper", **overrides)
    else:
        settings = settings.replace(**overrides)
    settings.validate()
    items = collect_inputs(inputs, recursive=recursive)
    out_dir = Path(out_dir).expanduser()
    inside = out_dir.resolve()
    items = [i for i in items if inside not in i.path.parents]  # our own PNGs, when OUT_DIR is in an input folder
    if not items:
        raise BatchError(f"every picture found is inside the output folder {out_dir}; give other inputs")
    if out_dir.exists() and not out_dir.is_dir():
        raise BatchError(f"the output folder {out_dir} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..atomic import probe_folder

    try:
        probe_folder(out_dir)
    except OSError as exc:
        raise BatchError(
            f"cannot write to {out_dir} ({exc.strerror or exc}); choose a folder you can write to"
        ) from None
    manifest = out_dir / MANIFEST
    digest = settings_hash(settings)
    previous = read_manifest(manifest)
    result = BatchResult(out_dir=out_dir, manifest=manifest)
    total = len(items)

    def finish(line: dict) -> None:
        _append(manifest, line)
        result.lines.append(line)
        if on_item is not None:
            on_item(len(result.lines), total, line)

    todo: List[Item] = []
    for item in items:
        before = previous.get(str(item.path))
        if not force and _done(before, digest, item.outputs(out_dir, png)):
            finish(dict(before, status="skipped", seconds=0.0, time=time.strftime("%Y-%m-%dT%H:%M:%S")))
        else:
            todo.append(item)
    if engine == "ray":
        from .ray_engine import run_on_ray

        for item, outcome in run_on_ray(
            todo,
            settings,
            png=png,
            png_size=png_size,
            address=ray_address,
            workers=workers,
            should_stop=should_stop,
            tries=ray_tries,
        ):
            finish(_record(item, outcome, out_dir, png, digest))
        result.stopped = len(result.lines) < total
    else:
        from ..models.compiled import runs_ahead

        for k, item in enumerate(todo):
            if should_stop is not None and should_stop():
                result.stopped = True
                break
            with runs_ahead(len(todo) - k):  # compile=auto: one compile serves the pictures left
                outcome = sketch_file(
                    item.path, settings, png_size=png_size, png=png, callback=callback, should_stop=should_stop
                )
            finish(_record(item, outcome, out_dir, png, digest))
    result.seconds = time.perf_counter() - t0
    return result


__all__ = [
    "sketch_many",
    "collect_inputs",
    "settings_hash",
    "read_manifest",
    "sketch_file",
    "sketch_bytes",
    "BatchResult",
    "BatchError",
    "Item",
    "MANIFEST",
    "ENGINES",
    "IMAGE_SUFFIXES",
    "RAY_TRIES",
]
