"""`load_clip`: the jobs of this package in order (search, read, build, wrap), with a cache of loaded
encoders and of files found unusable; `download_weights` fetches on purpose, then loads."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from ..errors import WeightsFileError, WeightsNotFoundError
from ..settings import DEFAULT_LOSS_MODEL, DEFAULT_PRETRAINED
from . import search
from .architecture import model_for_state, named_config
from .checkpoint import read_checkpoint
from .download import fetch_weights, open_clip_download
from .encoder import OPENAI_MEAN, OPENAI_STD, ClipEncoder, wrap_model

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

_CACHE: Dict[tuple, ClipEncoder] = {}
# Files found unusable, by (name, path, size, mtime): a truncated 300 MB download is not re-read on
# every later call (ComfyUI queues the same graph again and again) until the file changes.
_FAILED: Dict[tuple, WeightsFileError] = {}
_LOCK = threading.Lock()


def load_clip(
    name: str = DEFAULT_LOSS_MODEL,
    pretrained: Optional[str] = DEFAULT_PRETRAINED,
    weights: Optional[PathLike] = None,
    models_dir=None,
    device="cpu",
    dtype: Optional[torch.dtype] = None,
    allow_download: bool = True,
) -> ClipEncoder:
    """A frozen, eval-mode open_clip encoder, cached per (name, weights file, device, dtype).

    ``weights``: an explicit file (any format `read_checkpoint` reads). Otherwise the files of
    `candidate_paths` are tried in order; one that cannot be used is reported and the next is tried,
    then open_clip's download (when allowed and online). ``models_dir`` may be a folder or a list of
    folders (ComfyUI's ``models/clipasso``). The weights end up in fp32 (``dtype``) on ``device``
    whatever the file held; mixed precision is applied by autocast in the optimiser.
    """
    name = search.clean_name(name)
    tag = search.clean_tag(pretrained)
    device = torch.device(device)
    dtype = dtype or torch.float32
    pcfg = search.pretrained_cfg(name, tag)
    if weights is not None:
        path = Path(os.path.expanduser(os.fspath(weights)))
        if not path.is_file():
            raise WeightsNotFoundError(
                f"Check the path, or leave it empty to search the models folder "
                f"({search.suggested_folder(models_dir)}): the weights file for CLIP model {name!r} was not "
                f"found: {path}"
            )
        try:
            return _encoder_from_file(name, pretrained, path, pcfg, models_dir, device, dtype)
        except WeightsFileError as exc:
            raise WeightsFileError(
                f"Give the weights file that belongs to CLIP model {name!r} (or a matching "
                f"{name}.json config beside it): {exc}"
            ) from exc
    found, tried = search.find_weight_files(name, pretrained, models_dir)
    failures: List[Tuple[Path, str]] = []
    for path in found:
        try:
            return _encoder_from_file(name, pretrained, path, pcfg, models_dir, device, dtype)
        except WeightsFileError as exc:
            log.warning("skipping %s: %s", path, exc)
            failures.append((path, str(exc).replace(f"{path} ", "", 1)))
    got, note = open_clip_download(name, tag, pcfg, allow_download)
    if got is not None:
        try:
            return _encoder_from_file(name, pretrained, got, pcfg, models_dir, device, dtype)
        except WeightsFileError as exc:
            failures.append((got, str(exc).replace(f"{got} ", "", 1)))
            note = "the downloaded file could not be used"
    raise search.missing_error(name, tag, pretrained, models_dir, tried, failures, note)


def loss_encoder(settings, device="cpu") -> ClipEncoder:
    """The loss's encoder as a sketch's settings name it (``clip_model``, ``clip_pretrained``,
    ``clip_weights``, ``models_dir``, ``allow_download``: a `SketchSettings` or a layer's), through
    `load_clip` (so cached): the one place the still, scene and video pipelines load it."""
    return load_clip(
        settings.clip_model,
        settings.clip_pretrained,
        weights=settings.clip_weights,
        models_dir=settings.models_dir,
        device=device,
        allow_download=settings.allow_download,
    )


def _load_file(name: str, path: Path, pcfg: dict, custom_cfg: Optional[dict]) -> Tuple[torch.nn.Module, dict]:
    """(model with the file's weights, facts about the load) or `WeightsFileError` saying why not."""
    named = named_config(name) if custom_cfg is None else None  # an unknown name is the user's error, not the file's
    state, fmt = read_checkpoint(path)
    # OpenAI's weights were trained with QuickGELU; a config file may say otherwise.
    quick_gelu = bool(pcfg.get("quick_gelu", False)) or fmt.startswith("TorchScript")
    if custom_cfg is not None and "quick_gelu" in custom_cfg:
        quick_gelu = bool(custom_cfg["quick_gelu"])
    model, architecture = model_for_state(name, state, fmt, path, quick_gelu, custom_cfg, named)
    return model, {"format": fmt, "architecture": architecture}


def _encoder_from_file(name, pretrained, path: Path, pcfg: dict, models_dir, device, dtype) -> ClipEncoder:
    key = (name, str(path.resolve()), str(device), str(dtype))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
    st = path.stat()
    fail_key = (name, str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        failed = _FAILED.get(fail_key)
    if failed is not None:
        raise failed
    custom_cfg, _ = search.find_config(name, path, models_dir)
    try:
        model, info = _load_file(name, path, pcfg, custom_cfg)
    except WeightsFileError as exc:
        with _LOCK:
            _FAILED[fail_key] = exc
        raise
    mean, std = OPENAI_MEAN, OPENAI_STD
    pre = (custom_cfg or {}).get("preprocess_cfg") or {}
    if pcfg.get("mean"):
        mean, std = tuple(pcfg["mean"]), tuple(pcfg["std"])
    if pre.get("mean"):
        mean, std = tuple(pre["mean"]), tuple(pre.get("std", std))
    enc = wrap_model(
        model, name=name, pretrained=pretrained, source=str(path), device=device, dtype=dtype, mean=mean, std=std
    )
    enc.extra.update(info)
    with _LOCK:
        _CACHE.setdefault(key, enc)
        return _CACHE[key]


def forget(path: PathLike) -> None:
    """Drop the cached encoders and remembered failures of one weights file."""
    target = str(Path(path).resolve())
    with _LOCK:
        for cache in (_CACHE, _FAILED):
            for key in [k for k in cache if k[1] == target]:
                del cache[key]


def clear_cache() -> None:
    """Forget every loaded encoder (frees their memory once no one else holds them)."""
    with _LOCK:
        _CACHE.clear()
        _FAILED.clear()


def cached_encoders() -> Dict[tuple, ClipEncoder]:
    """A copy of the cache (tests put a saved one back with `restore_cache`)."""
    with _LOCK:
        return dict(_CACHE)


def restore_cache(saved: Dict[tuple, ClipEncoder]) -> None:
    """Put encoders from `cached_encoders` back into the cache."""
    with _LOCK:
        _CACHE.update(saved)


def download_weights(
    name: str = DEFAULT_LOSS_MODEL,
    pretrained: Optional[str] = DEFAULT_PRETRAINED,
    folder: Optional[PathLike] = None,
    stream=None,
    on_progress=None,
    device="cpu",
) -> ClipEncoder:
    """Download (name, pretrained) once, with a progress bar, and check that it loads.

    Where the file goes and what ``on_progress`` follows: `fetch_weights`. Returns the loaded encoder
    (on ``device``). Raises `WeightsNotFoundError` saying why and what to do instead.
    """
    got = fetch_weights(name, pretrained, folder, stream=stream, on_progress=on_progress)
    forget(got)  # a file just (re)written must be read again
    return load_clip(name, pretrained, weights=got, allow_download=False, device=device)
