"""Loading frozen open_clip image encoders for the CLIPasso losses and saliency.

Where weights come from, in this order:

1. ``weights=FILE``: an explicit checkpoint (``.safetensors``, ``.pt``, ``.pth``, ``.bin``; the
   official OpenAI TorchScript ``.pt`` files work too).
2. ``models_dir`` (one folder or a list; ComfyUI passes ``models/clipasso``) and the folder in the
   ``CLIPASSO_MODELS_DIR`` environment variable. A file is found by name: ``RN101-openai.safetensors``,
   ``RN101_openai.pt``, ``RN101.pt`` (the official OpenAI file name), ``RN101.safetensors``, or a
   Hugging Face style sub-folder such as ``resnet101_clip.openai/open_clip_model.safetensors``.
3. The caches open_clip itself downloads into: ``~/.cache/clip/<file>`` and the Hugging Face hub
   cache (``~/.cache/huggingface/hub/models--timm--resnet101_clip.openai/...``).
4. open_clip's own download, only when ``allow_download`` is true and the hub is not set offline.

A custom architecture is a real feature too: ``<models_dir>/<name>.json`` (an open_clip model
config: ``embed_dim``, ``vision_cfg``, ``text_cfg``) beside ``<name>.safetensors`` (or .pt/.bin) is
loaded by name. When nothing is found, one `WeightsNotFoundError` names the model, every path
tried and the exact folder to put the file in. Nothing is loaded or downloaded at import.
"""
from __future__ import annotations

import glob
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_EXTS = (".safetensors", ".pt", ".pth", ".bin")
HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                   "pytorch_model.bin")
MODELS_DIR_ENV = "CLIPASSO_MODELS_DIR"

DEFAULT_LOSS_MODEL = "RN101"
DEFAULT_SALIENCY_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"

PathLike = Union[str, os.PathLike]


class WeightsNotFoundError(FileNotFoundError):
    """No usable weights for a CLIP model; the message lists what was tried and where to put the file."""


class ModelConfigError(ValueError):
    """A model name or config that open_clip cannot build."""


@dataclass(eq=False)
class ClipEncoder:
    """A frozen open_clip model in eval mode plus what the losses need to know about it."""

    model: torch.nn.Module
    name: str
    pretrained: Optional[str]
    source: str  # the checkpoint file, or "random" for randomly initialised weights (benchmarks)
    image_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    is_vit: bool
    patch_size: Optional[int] = None
    extra: Dict = field(default_factory=dict)

    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """0..1 RGB ``[B,3,H,W]`` -> the encoder's normalised input."""
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        return (images - mean) / std

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Final image embeddings (not L2-normalised) of 0..1 RGB images at ``image_size``."""
        return self.visual(self.normalize(images.to(self.device, self.dtype)))

    def __repr__(self) -> str:
        kind = f"ViT/{self.patch_size}" if self.is_vit else "ResNet"
        return (f"ClipEncoder({self.name!r}, pretrained={self.pretrained!r}, {kind}, "
                f"image_size={self.image_size}, device={self.device.type}, source={self.source!r})")


# --------------------------------------------------------------------------- naming

def clean_name(name: str) -> str:
    """open_clip spells 'ViT-B/32' as 'ViT-B-32'."""
    if not isinstance(name, str) or not name.strip():
        raise ModelConfigError(f"a CLIP model name must be a non-empty string, e.g. 'RN101'; got {name!r}")
    return name.strip().replace("/", "-")


def _clean_tag(tag: Optional[str]) -> Optional[str]:
    if tag is None or str(tag).strip().lower() in ("", "none"):
        return None
    return str(tag).strip().lower().replace("-", "_")


def _pretrained_cfg(name: str, tag: Optional[str]) -> dict:
    if tag is None:
        return {}
    from open_clip import pretrained as oc_pretrained

    return dict(oc_pretrained.get_pretrained_cfg(name, tag) or {})


def _models_dirs(models_dir) -> List[Path]:
    dirs: List[Path] = []
    if models_dir is not None:
        items = [models_dir] if isinstance(models_dir, (str, os.PathLike)) else list(models_dir)
        dirs.extend(Path(os.path.expanduser(os.fspath(d))) for d in items if d)
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        dirs.extend(Path(os.path.expanduser(p)) for p in env.split(os.pathsep) if p)
    seen, out = set(), []
    for d in dirs:
        if str(d) not in seen:
            seen.add(str(d))
            out.append(d)
    return out


def _hf_repo(cfg: dict) -> Tuple[Optional[str], Optional[str]]:
    """('timm/resnet101_clip.openai', file or None) from an open_clip pretrained cfg."""
    hub = cfg.get("hf_hub") or ""
    if not hub:
        return None, None
    if hub.endswith("/"):
        return hub.rstrip("/"), None
    repo, filename = os.path.split(hub)
    return repo, filename or None


def _hf_cache_dirs() -> List[Path]:
    dirs = []
    try:
        from huggingface_hub import constants as hf_constants

        dirs.append(Path(hf_constants.HF_HUB_CACHE))
    except Exception:  # noqa: BLE001 - huggingface_hub is optional
        pass
    home = os.environ.get("HF_HOME")
    if home:
        dirs.append(Path(home) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    out, seen = [], set()
    for d in dirs:
        if str(d) not in seen:
            seen.add(str(d))
            out.append(d)
    return out


def candidate_paths(name: str, pretrained: Optional[str] = DEFAULT_PRETRAINED,
                    models_dir=None) -> List[Path]:
    """Every file path the loader looks at for (name, pretrained), in order (files may not exist)."""
    name = clean_name(name)
    tag = _clean_tag(pretrained)
    cfg = _pretrained_cfg(name, tag)
    official = os.path.basename(cfg.get("url", "")) or None
    repo, repo_file = _hf_repo(cfg)
    repo_leaf = repo.split("/")[-1] if repo else None

    stems = [f"{name}-{tag}", f"{name}_{tag}"] if tag else []
    stems.append(name)
    paths: List[Path] = []
    for d in _models_dirs(models_dir):
        for stem in stems:
            paths += [d / f"{stem}{ext}" for ext in WEIGHT_EXTS]
        if official:
            paths.append(d / official)
        for sub in ([repo_leaf] if repo_leaf else []) + stems[:1]:
            paths += [d / sub / f for f in HF_WEIGHT_NAMES[:2]]
    if official:
        paths.append(Path.home() / ".cache" / "clip" / official)
    if repo:
        folder = "models--" + repo.replace("/", "--")
        names = [repo_file] if repo_file else list(HF_WEIGHT_NAMES[:2])
        for cache in _hf_cache_dirs():
            for fname in names:
                paths.append(cache / folder / "snapshots" / "*" / fname)
    out, seen = [], set()
    for p in paths:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def _existing(path: Path) -> Optional[Path]:
    if "*" in str(path):
        hits = sorted(glob.glob(str(path)))
        return Path(hits[-1]) if hits else None
    return path if path.is_file() else None


def _describe(paths: Sequence[Path]) -> str:
    """Paths grouped by folder, one line per folder."""
    groups: Dict[str, List[str]] = {}
    for p in paths:
        parts = p.parts
        if "snapshots" in parts:  # Hugging Face cache: <cache>/models--x--y/snapshots/*/file
            i = parts.index("snapshots")
            folder, rest = str(Path(*parts[:i - 1])), str(Path(*parts[i - 1:]))
        else:
            folder, rest = str(p.parent), p.name
        if p.parent.name and p.parent.name not in ("clip",) and "snapshots" not in parts and \
                p.name in HF_WEIGHT_NAMES:
            folder, rest = str(p.parent.parent), f"{p.parent.name}/{p.name}"
        groups.setdefault(folder, []).append(rest)
    return "\n  ".join(f"{folder}/: {', '.join(names)}" for folder, names in groups.items())


def suggested_folder(models_dir=None) -> Path:
    """The folder a user should drop weight files into."""
    dirs = _models_dirs(models_dir)
    return dirs[0] if dirs else Path.home() / ".cache" / "clip"


def _download_host(cfg: dict) -> Optional[str]:
    """The host open_clip would download this pretrained config from."""
    from urllib.parse import urlparse

    try:
        import huggingface_hub  # noqa: F401 - open_clip prefers the hub when it is installed
        has_hub = True
    except ImportError:
        has_hub = False
    if cfg.get("hf_hub") and has_hub:
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if cfg.get("url"):
        return urlparse(cfg["url"]).hostname
    return None


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine fails in seconds instead of a minute of retries."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CLIPASSO_OFFLINE"))


# --------------------------------------------------------------------------- configs

def _read_json_config(path: Path) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConfigError(f"could not read the model config {path}: {exc}") from exc
    if isinstance(cfg, dict) and "model_cfg" in cfg:  # Hugging Face open_clip_config.json layout
        merged = dict(cfg["model_cfg"])
        if "preprocess_cfg" in cfg:
            merged["preprocess_cfg"] = cfg["preprocess_cfg"]
        cfg = merged
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelConfigError(f"{path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    return cfg


def _find_config(name: str, weights: Optional[Path], models_dir) -> Tuple[Optional[dict], Optional[Path]]:
    """A custom JSON config: beside the weights file, or <models_dir>/<name>.json."""
    cands: List[Path] = []
    if weights is not None:
        cands += [weights.with_suffix(".json"), weights.parent / "open_clip_config.json"]
    for d in _models_dirs(models_dir):
        cands += [d / f"{name}.json", d / name / "open_clip_config.json"]
    for c in cands:
        if c.is_file():
            return _read_json_config(c), c
    return None, None


def _build_model(name: str, custom_cfg: Optional[dict], quick_gelu: bool) -> torch.nn.Module:
    import open_clip

    if custom_cfg is not None:
        cfg = {k: v for k, v in custom_cfg.items() if k != "preprocess_cfg"}
        if quick_gelu:
            cfg["quick_gelu"] = True
        custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
        cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
        try:
            return cls(**cfg)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise ModelConfigError(f"open_clip cannot build model {name!r} from its config: {exc}") from exc
    if open_clip.get_model_config(name) is None:
        raise ModelConfigError(
            f"unknown CLIP model {name!r}. Use an open_clip model name (e.g. RN101, RN50, ViT-B-32, ViT-B-16) "
            f"or put a config {name}.json beside its weights in the models folder.")
    return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu, device="cpu")


def _load_weights(model: torch.nn.Module, path: Path, name: str) -> torch.nn.Module:
    import open_clip

    try:
        open_clip.load_checkpoint(model, str(path), strict=True)
        return model
    except Exception as first:  # noqa: BLE001
        # The official OpenAI files are TorchScript archives; open_clip rebuilds those from their state dict.
        try:
            rebuilt = open_clip.load_openai_model(str(path), device="cpu", jit=False)
            if type(rebuilt.visual) is not type(model.visual):
                raise ModelConfigError("architecture differs")
            return rebuilt
        except Exception:  # noqa: BLE001
            raise WeightsNotFoundError(
                f"the weights file {path} does not fit CLIP model {name!r} ({type(first).__name__}: "
                f"{str(first)[:300]}). Give the file that belongs to this model, or a matching {name}.json config."
            ) from first


# --------------------------------------------------------------------------- public

_CACHE: Dict[tuple, ClipEncoder] = {}
_LOCK = threading.Lock()


def resolve_weights(name: str = DEFAULT_LOSS_MODEL, pretrained: Optional[str] = DEFAULT_PRETRAINED,
                    weights: Optional[PathLike] = None, models_dir=None,
                    allow_download: bool = True) -> Path:
    """The checkpoint file for a model, downloading through open_clip only as the last resort."""
    name = clean_name(name)
    if weights is not None:
        path = Path(os.path.expanduser(os.fspath(weights)))
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file for CLIP model {name!r} not found: {path}. Check the path, or leave it empty to "
                f"search the models folder ({suggested_folder(models_dir)}).")
        return path
    tried = candidate_paths(name, pretrained, models_dir)
    for p in tried:
        hit = _existing(p)
        if hit is not None:
            return hit
    tag = _clean_tag(pretrained)
    cfg = _pretrained_cfg(name, tag)
    download_note = ""
    host = _download_host(cfg) if cfg else None
    if cfg and allow_download and not _offline() and host and not _reachable(host):
        download_note = (f"{host} cannot be reached (offline?), so nothing was downloaded")
    elif cfg and allow_download and not _offline():
        from open_clip import pretrained as oc_pretrained

        try:
            got = oc_pretrained.download_pretrained(cfg)
            if got and os.path.isfile(got):
                return Path(got)
            download_note = "open_clip's download returned no file"
        except Exception as exc:  # noqa: BLE001 - offline, blocked, ...
            download_note = f"open_clip's download failed ({type(exc).__name__}: {str(exc)[:200]})"
    elif not cfg:
        download_note = (f"open_clip knows no pretrained tag {pretrained!r} for {name!r}, so nothing can be "
                         "downloaded")
    elif not allow_download:
        download_note = "downloading was not allowed"
    else:
        download_note = "downloading is off (HF_HUB_OFFLINE / CLIPASSO_OFFLINE is set)"
    folder = suggested_folder(models_dir)
    official = os.path.basename(cfg.get("url", "")) if cfg else ""
    repo, _ = _hf_repo(cfg) if cfg else (None, None)
    what = f"the official file {official!r}" if official else f"a file named '{name}-{tag or 'weights'}.safetensors'"
    if repo:
        what += f" (or open_clip_model.safetensors from huggingface.co/{repo}, renamed to '{name}-{tag}.safetensors')"
    raise WeightsNotFoundError(
        f"no weights for CLIP model {name!r} (pretrained {pretrained!r}). Tried:\n  " + _describe(tried)
        + f"\n{download_note}.\nPut {what} into this folder: {folder}\n"
        + "or pass an explicit file (weights=..., CLI --clip-weights / --saliency-weights).")


def load_clip(name: str = DEFAULT_LOSS_MODEL, pretrained: Optional[str] = DEFAULT_PRETRAINED,
              weights: Optional[PathLike] = None, models_dir=None, device="cpu",
              dtype: Optional[torch.dtype] = None, allow_download: bool = True) -> ClipEncoder:
    """A frozen, eval-mode open_clip encoder, cached per (name, weights file, device, dtype).

    ``models_dir`` may be a folder or a list of folders (ComfyUI's ``models/clipasso``).
    ``dtype`` None keeps fp32 (mixed precision is applied by autocast in the optimiser).
    """
    name = clean_name(name)
    tag = _clean_tag(pretrained)
    device = torch.device(device)
    dtype = dtype or torch.float32
    path = resolve_weights(name, pretrained, weights, models_dir, allow_download)
    key = (name, str(path.resolve()), str(device), str(dtype))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
    custom_cfg, _ = _find_config(name, path, models_dir)
    pcfg = _pretrained_cfg(name, tag)
    # OpenAI's weights were trained with QuickGELU; a config file may leave that to the tag.
    quick_gelu = bool(pcfg.get("quick_gelu", False))
    if custom_cfg is not None and "quick_gelu" in custom_cfg:
        quick_gelu = bool(custom_cfg["quick_gelu"])
    model = _build_model(name, custom_cfg, quick_gelu)
    model = _load_weights(model, path, name)
    mean, std = OPENAI_MEAN, OPENAI_STD
    pre = (custom_cfg or {}).get("preprocess_cfg") or {}
    if pcfg.get("mean"):
        mean, std = tuple(pcfg["mean"]), tuple(pcfg["std"])
    if pre.get("mean"):
        mean, std = tuple(pre["mean"]), tuple(pre.get("std", std))
    enc = wrap_model(model, name=name, pretrained=pretrained, source=str(path), device=device, dtype=dtype,
                     mean=mean, std=std)
    with _LOCK:
        _CACHE.setdefault(key, enc)
        return _CACHE[key]


def wrap_model(model: torch.nn.Module, name: str, pretrained: Optional[str] = None, source: str = "random",
               device="cpu", dtype: Optional[torch.dtype] = None, mean: Sequence[float] = OPENAI_MEAN,
               std: Sequence[float] = OPENAI_STD) -> ClipEncoder:
    """Freeze an already built open_clip model and describe it (also used by benchmarks with random weights)."""
    model = model.to(device=torch.device(device), dtype=dtype or torch.float32).eval()
    model.requires_grad_(False)
    visual = model.visual
    is_vit = hasattr(visual, "transformer") and hasattr(visual, "conv1") and not hasattr(visual, "layer1")
    size = getattr(visual, "image_size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    patch = None
    if is_vit:
        ps = getattr(visual, "patch_size", None)
        patch = int(ps[0] if isinstance(ps, (tuple, list)) else ps) if ps is not None else None
    else:
        if hasattr(visual, "layer1"):
            # Convolutions run 10-20% faster in channels-last layout on CPU (oneDNN) and on tensor cores.
            model.visual.to(memory_format=torch.channels_last)
    if not is_vit and not hasattr(visual, "layer1"):
        raise ModelConfigError(f"model {name!r} has an image tower CLIPasso cannot read features from "
                               f"({type(visual).__name__}); use a CLIP ResNet (RN50, RN101, ...) or ViT")
    return ClipEncoder(model=model, name=name, pretrained=pretrained, source=source, image_size=size,
                       mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                       is_vit=is_vit, patch_size=patch)


def clear_cache() -> None:
    """Forget every loaded encoder (frees their memory once no one else holds them)."""
    with _LOCK:
        _CACHE.clear()
