"""Loading frozen open_clip image encoders for the CLIPasso losses and saliency.

File formats (`read_checkpoint`): OpenAI's released TorchScript archives (``RN101.pt``,
``ViT-B-32.pt``, ...; fp16 or fp32; their tensors are read as data by `clipasso.safe_archive`, nothing in
them is run), open_clip / Hugging Face state dicts (``.safetensors``, and
``.pt/.pth/.bin`` read with ``weights_only=True``, also wrapped in ``{"state_dict": ...}`` or with
``module.`` prefixes). Whatever the file's dtype, the encoder ends up in fp32 on the compute device.
A file in OpenAI's layout describes its own architecture (`config_from_state_dict`), so one whose
sizes differ from the named model's config is still loaded, with a warning; one of the other kind
(a ViT file for a ResNet name) is refused.

Where weights come from, in this order:

1. ``weights=FILE``: an explicit checkpoint; if it cannot be used, that is the error.
2. ``models_dir`` (one folder or a list; ComfyUI passes ``models/clipasso``), then the folders in the
   ``CLIPASSO_MODELS_DIR`` environment variable. A file is found by name: ``RN101-openai.safetensors``
   (.pt/.pth/.bin too), ``RN101_openai.*``, ``RN101.*``, OpenAI's own ``RN101.pt``, or a Hugging Face
   style sub-folder such as ``resnet101_clip.openai/open_clip_model.safetensors``.
3. The caches downloads go to: ``~/.cache/clip/<OpenAI file>`` (OpenAI's ``clip`` package and
   open_clip) and the Hugging Face hub cache (``models--timm--resnet101_clip.openai/...``).
4. open_clip's own download, only when ``allow_download`` is true and the hub is not set offline.

A candidate that cannot be used (truncated, another model, pickled code) is skipped with a warning
and the next one is tried. A custom architecture is a real feature too: ``<models_dir>/<name>.json``
(an open_clip model config: ``embed_dim``, ``vision_cfg``, ``text_cfg``) beside
``<name>.safetensors`` (or .pt/.bin) is loaded by name. When nothing can be used, one
`WeightsNotFoundError` whose first line says which file to put into which folder, then what was
wrong with each file found, then every path looked at. Nothing is loaded or downloaded at import;
`download_weights` (``clipasso download-weights``) fetches the defaults on purpose.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_EXTS = (".safetensors", ".pt", ".pth", ".bin")
HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                   "pytorch_model.bin")

from .errors import ClipassoError, WeightsFileError, WeightsNotFoundError
from .settings import DEFAULT_LOSS_MODEL, DEFAULT_PRETRAINED, DEFAULT_SALIENCY_MODEL  # noqa: E402
from .settings import MODELS_DIR_ENV  # noqa: E402 - defined with the settings: the CLI reads it without torch

PathLike = Union[str, os.PathLike]


class ModelConfigError(ClipassoError, ValueError):
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


def _build_from_cfg(name: str, cfg: dict, quick_gelu: bool) -> torch.nn.Module:
    """An open_clip model from a config dict, built directly (open_clip's ``create_model`` would log
    "No pretrained weights loaded ... initialized randomly" right before we load the weights)."""
    import open_clip

    cfg = {k: v for k, v in cfg.items() if k != "preprocess_cfg"}
    if quick_gelu:
        cfg["quick_gelu"] = True
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        cls = open_clip.CoCa
    else:
        cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        return cls(**cfg)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelConfigError(f"open_clip cannot build model {name!r} from its config: {exc}") from exc


def _named_cfg(name: str) -> dict:
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelConfigError(
            f"unknown CLIP model {name!r}. Use an open_clip model name (e.g. RN101, RN50, ViT-B-32, ViT-B-16) "
            f"or put a config {name}.json beside its weights in the models folder.")
    return cfg


# --------------------------------------------------------------------------- checkpoint files

# OpenAI's TorchScript archives keep these integers in their state dict; no model has them as weights.
_OPENAI_INT_BUFFERS = ("input_resolution", "context_length", "vocab_size")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREFIXES = ("module.", "_orig_mod.")


def is_torchscript_archive(path: PathLike) -> bool:
    """A TorchScript archive (``torch.jit.save``; OpenAI's released CLIP ``.pt`` files) rather than a
    ``torch.save`` state dict: both are zip files, only TorchScript's holds ``constants.pkl`` or code.
    Either one sends the file to `clipasso.safe_archive` (``torch.load`` would hand it to ``torch.jit.load``
    were ``weights_only`` ever off)."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) or any("/code/" in n for n in names)


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, torch.Tensor], str]:
    """(state dict with fp32 floating tensors, format name) of a weights file.

    Formats: safetensors; ``torch.save`` state dicts (``.pt/.pth/.bin``, loaded with
    ``weights_only=True``), also wrapped in ``{"state_dict": ...}`` (open_clip training checkpoints) or
    with ``module.`` / ``_orig_mod.`` key prefixes (DataParallel, torch.compile); OpenAI's TorchScript
    archives (fp16 or fp32). Raises `WeightsFileError` with the reason when the file is none of these.
    """
    import pickle

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsFileError(f"cannot read {path}: {exc}") from exc
    if size == 0:
        raise WeightsFileError(f"{path} is empty (an interrupted download?)")
    fmt = ""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj, fmt = load_file(str(path), device="cpu"), "safetensors"
        elif is_torchscript_archive(path):
            # read as data: torch.jit.load would compile and run code from the file (see safe_archive)
            from .safe_archive import read_torchscript_state

            fmt = "TorchScript archive (OpenAI format)"
            obj = dict(read_torchscript_state(path))
        else:
            obj, fmt = torch.load(str(path), map_location="cpu", weights_only=True), "PyTorch state dict"
    except WeightsFileError:
        raise
    except pickle.UnpicklingError as exc:
        raise WeightsFileError(
            f"{path} holds pickled Python objects, not only tensors, so it is not loaded (weights_only=True "
            f"keeps a downloaded file from running code). Save its state_dict() instead. ({str(exc)[:160]})") from exc
    except Exception as exc:  # noqa: BLE001 - truncated zips, bad headers, ... all come out here
        raise WeightsFileError(f"{path} is not a readable weights file ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); it may be truncated: download it again") from exc
    for _ in range(3):  # {"state_dict": {...}} and similar wrappers
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) and k.startswith("visual.")
                                             for k, v in obj.items()):
                obj = inner
                continue
        break
    if not isinstance(obj, dict) or not obj:
        raise WeightsFileError(f"{path} ({fmt}) holds no state dict of tensors")
    state = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue  # epoch numbers, names, optimiser states of training checkpoints
        state[str(k)] = v
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    for k in _OPENAI_INT_BUFFERS:
        state.pop(k, None)
    if not state:
        raise WeightsFileError(f"{path} ({fmt}) holds no tensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, fmt


def _count(state: Dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered children ``prefix<i>.`` the state dict has."""
    ids = set()
    for k in state:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                ids.add(int(head))
    return len(ids)


def config_from_state_dict(state: Dict[str, torch.Tensor]) -> Optional[dict]:
    """The open_clip config of a CLIP state dict in OpenAI's layout (which open_clip's CLIP shares),
    read from its tensor shapes; None when the keys are not that layout.

    OpenAI's files carry no config: their architecture *is* their shapes (head width 64 everywhere).
    """
    try:
        text = {
            "context_length": int(state["positional_embedding"].shape[0]),
            "vocab_size": int(state["token_embedding.weight"].shape[0]),
            "width": int(state["ln_final.weight"].shape[0]),
            "layers": _count(state, "transformer.resblocks."),
        }
        text["heads"] = max(1, text["width"] // 64)
        embed_dim = int(state["text_projection"].shape[1])
        if "visual.proj" in state:  # ViT
            conv = state["visual.conv1.weight"]
            patch = int(conv.shape[-1])
            grid = int(round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5))
            vision = {"layers": _count(state, "visual.transformer.resblocks."), "width": int(conv.shape[0]),
                      "patch_size": patch, "image_size": patch * grid}
            fc = state.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
            if fc is not None:
                vision["mlp_ratio"] = fc.shape[0] / conv.shape[0]
        elif "visual.layer1.0.conv1.weight" in state:  # ModifiedResNet
            grid = int(round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5))
            vision = {"layers": [_count(state, f"visual.layer{i}.") for i in range(1, 5)],
                      "width": int(state["visual.layer1.0.conv1.weight"].shape[0]),
                      "patch_size": None, "image_size": grid * 32}
        else:
            return None
    except (KeyError, IndexError):
        return None
    if not vision["layers"] or not text["layers"]:
        return None
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text}


def _fit(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` strictly (raises RuntimeError/ValueError when it does not fit)."""
    state = dict(state)
    ls = getattr(model, "logit_scale", None)
    if isinstance(ls, torch.Tensor) and "logit_scale" in state and state["logit_scale"].ndim != ls.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(ls.shape)
    if getattr(model, "logit_bias", None) is not None and "logit_bias" not in state and "logit_scale" in state:
        state["logit_bias"] = torch.zeros_like(model.logit_bias)
    model.load_state_dict(state, strict=True)


def _kind(cfg: dict) -> str:
    v = cfg.get("vision_cfg", {})
    if v.get("timm_model_name"):
        return "timm"
    return "ResNet" if isinstance(v.get("layers"), (list, tuple)) else "ViT"


def _describe_cfg(cfg: dict) -> str:
    v = cfg["vision_cfg"]
    if _kind(cfg) == "ResNet":
        return f"a CLIP ResNet (blocks {tuple(v['layers'])}, width {v['width']})"
    return f"a CLIP ViT ({v['layers']} blocks, width {v['width']}, patch {v.get('patch_size')})"


def _load_file(name: str, path: Path, pcfg: dict, custom_cfg: Optional[dict]) -> Tuple[torch.nn.Module, dict]:
    """(model with the file's weights, facts about the load) or `WeightsFileError` saying why not."""
    named = _named_cfg(name) if custom_cfg is None else None  # an unknown name is the user's error, not the file's
    state, fmt = read_checkpoint(path)
    openai_archive = fmt.startswith("TorchScript")
    # OpenAI's weights were trained with QuickGELU; a config file may say otherwise.
    quick_gelu = bool(pcfg.get("quick_gelu", False)) or openai_archive
    info = {"format": fmt, "architecture": name}
    if custom_cfg is not None:
        if "quick_gelu" in custom_cfg:
            quick_gelu = bool(custom_cfg["quick_gelu"])
        model = _build_from_cfg(name, custom_cfg, quick_gelu)
        try:
            _fit(model, state)
        except (RuntimeError, ValueError) as exc:
            raise WeightsFileError(f"{path} ({fmt}) does not fit the config of {name!r} "
                                   f"({str(exc).splitlines()[0][:200]})") from exc
        return model, info
    # A file in OpenAI's layout describes its own architecture; building the named model first only
    # to find it does not fit would cost seconds (a random RN101 / ViT-B-32 initialisation).
    inferred = config_from_state_dict(state)
    first: Optional[BaseException] = None
    if inferred is None or _same_architecture(inferred, named):
        model = _build_from_cfg(name, named, quick_gelu)
        try:
            _fit(model, state)
            return model, info
        except (RuntimeError, ValueError) as exc:
            first = exc
    if inferred is None:
        raise WeightsFileError(f"{path} ({fmt}) is not a CLIP checkpoint for {name!r} "
                               f"({str(first).splitlines()[0][:200]})") from first
    if _kind(inferred) != _kind(named):
        raise WeightsFileError(f"{path} ({fmt}) holds {_describe_cfg(inferred)}, but {name!r} is a CLIP "
                               f"{_kind(named)}: give the file that belongs to {name!r}")
    try:
        model = _build_from_cfg(name, inferred, quick_gelu)
        _fit(model, state)
    except (RuntimeError, ValueError) as exc:  # ModelConfigError is a ValueError: odd shapes in the file
        why = str(first or exc).splitlines()[0][:200]
        raise WeightsFileError(f"{path} ({fmt}) does not fit CLIP model {name!r} ({why})") from exc
    if not _same_architecture(inferred, named):
        log.warning("%s holds %s, not the %s architecture; using the file's own architecture",
                    path, _describe_cfg(inferred), name)
        info["architecture"] = _describe_cfg(inferred)
    return model, info


def _same_architecture(a: dict, b: dict) -> bool:
    """Whether two open_clip configs have the same shapes where a state dict can tell them apart."""
    va, vb = a.get("vision_cfg", {}), b.get("vision_cfg", {})
    ta, tb = a.get("text_cfg", {}), b.get("text_cfg", {})

    def layers(v):
        x = v.get("layers")
        return tuple(x) if isinstance(x, (list, tuple)) else x

    return (a.get("embed_dim") == b.get("embed_dim") and layers(va) == layers(vb)
            and va.get("width") == vb.get("width") and va.get("patch_size") == vb.get("patch_size")
            and va.get("image_size", 224) == vb.get("image_size", 224)
            and all(ta.get(k) == tb.get(k) for k in ("context_length", "vocab_size", "width", "layers")))


# --------------------------------------------------------------------------- public

_CACHE: Dict[tuple, ClipEncoder] = {}
# Files found unusable, by (name, path, size, mtime): a truncated 300 MB download is not re-read on
# every later call (ComfyUI queues the same graph again and again) until the file changes.
_FAILED: Dict[tuple, WeightsFileError] = {}
_LOCK = threading.Lock()


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def model_names_in(folders) -> List[str]:
    """CLIP model names whose files a folder holds, read from the file names alone (nothing is opened or
    imported, so a ComfyUI node list can show them): ``<name>.json`` configs, OpenAI's own files
    (``RN101.pt``; ``ViT-L-14-336px.pt`` is open_clip's ``ViT-L-14-336``) and ``<name>[-<tag>]`` weights
    (``RN101-openai.safetensors``). Sorted, without repeats."""
    names = set()
    for folder in folders or []:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            stem, ext = os.path.splitext(entry)
            if ext == ".json":
                names.add(stem)
                continue
            if ext not in WEIGHT_SUFFIXES or not stem.startswith(("RN", "ViT-", "convnext", "EVA", "coca")):
                continue
            for sep in ("-", "_"):  # a pretrained tag after the name: "-openai", "-laion2b_s34b_b79k"
                head, _, tail = stem.rpartition(sep)
                if head and (tail == "openai" or (tail[:1].islower() and "_" in tail)):
                    stem = head
                    break
            names.add(stem.replace("-336px", "-336"))  # OpenAI's ViT-L/14@336 file name
    return sorted(names)


def find_weight_files(name: str, pretrained: Optional[str] = DEFAULT_PRETRAINED, models_dir=None
                      ) -> Tuple[List[Path], List[Path]]:
    """(existing candidate files in search order, every path looked at)."""
    tried = candidate_paths(name, pretrained, models_dir)
    found: List[Path] = []
    for p in tried:
        hit = _existing(p)
        if hit is not None and all(str(hit) != str(f) for f in found):
            found.append(hit)
    return found, tried


def _download(name: str, tag: Optional[str], cfg: dict, allow_download: bool) -> Tuple[Optional[Path], str]:
    """(downloaded file or None, why not) through open_clip's own download (Hugging Face cache)."""
    if not cfg:
        return None, (f"open_clip knows no pretrained tag {tag!r} for {name!r}, so nothing can be downloaded")
    if not allow_download:
        return None, "downloading was not allowed (--offline)"
    if _offline():
        return None, "downloading is off (HF_HUB_OFFLINE / CLIPASSO_OFFLINE is set)"
    host = _download_host(cfg)
    if host and not _reachable(host):
        return None, f"{host} cannot be reached (offline?), so nothing was downloaded"
    from open_clip import pretrained as oc_pretrained

    try:
        got = oc_pretrained.download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - offline, blocked, ...
        return None, f"open_clip's download failed ({type(exc).__name__}: {str(exc)[:200]})"
    if got and os.path.isfile(got):
        return Path(got), ""
    return None, "open_clip's download returned no file"


def official_file_name(name: str, pretrained: Optional[str] = DEFAULT_PRETRAINED) -> str:
    """The file name a user should put into the models folder: OpenAI's own (``RN101.pt``) where
    there is one, else ``<name>-<tag>.safetensors``."""
    name, tag = clean_name(name), _clean_tag(pretrained)
    cfg = _pretrained_cfg(name, tag)
    official = os.path.basename(cfg.get("url", "")) if cfg else ""
    return official or f"{name}-{tag or 'weights'}.safetensors"


def _missing_error(name: str, tag, pretrained, models_dir, tried: Sequence[Path],
                   failures: Sequence[Tuple[Path, str]], download_note: str) -> WeightsNotFoundError:
    folder = suggested_folder(models_dir)
    fname = official_file_name(name, tag)
    cfg = _pretrained_cfg(name, tag)
    dirs = _models_dirs(models_dir)
    flag = f" --models-dir {dirs[0]}" if dirs else ""
    online = f" or run `clipasso download-weights{flag}` once online" if cfg else ""
    lines = [f"Put {fname} (CLIP {name}, {tag or 'your'} weights) into {folder}{online}; "
             f"or give the file itself (--clip-weights / --saliency-weights, weights=...).",
             f"No usable weights for CLIP model {name!r} (pretrained {pretrained!r}) were found."]
    if failures:
        lines.append("Files found but not usable:")
        lines += [f"  {p}: {why}" for p, why in failures]
    if download_note:
        lines.append(f"Download: {download_note}.")
    repo, _ = _hf_repo(cfg) if cfg else (None, None)
    if repo:
        lines.append(f"(The same weights as safetensors: open_clip_model.safetensors from huggingface.co/{repo}, "
                     f"saved as {name}-{tag}.safetensors.)")
    lines.append("Looked in:\n  " + _describe(tried))
    return WeightsNotFoundError("\n".join(lines))


def load_clip(name: str = DEFAULT_LOSS_MODEL, pretrained: Optional[str] = DEFAULT_PRETRAINED,
              weights: Optional[PathLike] = None, models_dir=None, device="cpu",
              dtype: Optional[torch.dtype] = None, allow_download: bool = True) -> ClipEncoder:
    """A frozen, eval-mode open_clip encoder, cached per (name, weights file, device, dtype).

    ``weights``: an explicit file (any format `read_checkpoint` reads). Otherwise the files of
    `candidate_paths` are tried in order; one that cannot be used is reported and the next is tried,
    then open_clip's download (when allowed and online). ``models_dir`` may be a folder or a list of
    folders (ComfyUI's ``models/clipasso``). The weights end up in fp32 (``dtype``) on ``device``
    whatever the file held; mixed precision is applied by autocast in the optimiser.
    """
    name = clean_name(name)
    tag = _clean_tag(pretrained)
    device = torch.device(device)
    dtype = dtype or torch.float32
    pcfg = _pretrained_cfg(name, tag)
    if weights is not None:
        path = Path(os.path.expanduser(os.fspath(weights)))
        if not path.is_file():
            raise WeightsNotFoundError(
                f"Check the path, or leave it empty to search the models folder ({suggested_folder(models_dir)}): "
                f"the weights file for CLIP model {name!r} was not found: {path}")
        try:
            return _encoder_from_file(name, pretrained, path, pcfg, models_dir, device, dtype)
        except WeightsFileError as exc:
            raise WeightsFileError(f"Give the weights file that belongs to CLIP model {name!r} (or a matching "
                                   f"{name}.json config beside it): {exc}") from exc
    found, tried = find_weight_files(name, pretrained, models_dir)
    failures: List[Tuple[Path, str]] = []
    for path in found:
        try:
            return _encoder_from_file(name, pretrained, path, pcfg, models_dir, device, dtype)
        except WeightsFileError as exc:
            log.warning("skipping %s: %s", path, exc)
            failures.append((path, str(exc).replace(f"{path} ", "", 1)))
    got, note = _download(name, tag, pcfg, allow_download)
    if got is not None:
        try:
            return _encoder_from_file(name, pretrained, got, pcfg, models_dir, device, dtype)
        except WeightsFileError as exc:
            failures.append((got, str(exc).replace(f"{got} ", "", 1)))
            note = "the downloaded file could not be used"
    raise _missing_error(name, tag, pretrained, models_dir, tried, failures, note)


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
    custom_cfg, _ = _find_config(name, path, models_dir)
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
    enc = wrap_model(model, name=name, pretrained=pretrained, source=str(path), device=device, dtype=dtype,
                     mean=mean, std=std)
    enc.extra.update(info)
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


# --------------------------------------------------------------------------- downloading on purpose

def _progress_line(done: int, total: Optional[int], label: str, stream) -> None:
    mb = done / 1e6
    if total:
        frac = min(1.0, done / total)
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        text = f"\r{label} [{bar}] {mb:7.1f} / {total / 1e6:.1f} MB"
    else:
        text = f"\r{label} {mb:7.1f} MB"
    stream.write(text)
    stream.flush()


def fetch_url(url: str, dest: PathLike, sha256: Optional[str] = None, label: str = "", stream=None,
              timeout: float = 30.0, on_progress=None) -> Path:
    """Download ``url`` to ``dest`` with a progress line; atomic (a partial file never takes the
    name), checked against ``sha256`` when given. ``on_progress(done_bytes, total_bytes or None)`` is
    called after every chunk (a ComfyUI node shows it in its progress bar). Raises OSError/ValueError."""
    import hashlib
    import sys
    import urllib.request

    from .atomic import atomic_open

    stream = stream if stream is not None else sys.stderr
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    # an exception inside (a cut download, a wrong hash) leaves no file and any previous one untouched
    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
        total = int(src.headers.get("Content-Length") or 0) or None
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            _progress_line(done, total, label or dest.name, stream)
            if on_progress is not None:
                on_progress(done, total)
        stream.write("\n")
        if total is not None and done != total:
            raise OSError(f"the download of {url} stopped after {done} of {total} bytes")
        if sha256 and not digest.hexdigest().startswith(sha256.lower()):
            raise ValueError(f"the file downloaded from {url} has the wrong SHA-256 ({digest.hexdigest()[:16]}..., "
                             f"expected {sha256[:16]}...)")
    return dest


def download_weights(name: str = DEFAULT_LOSS_MODEL, pretrained: Optional[str] = DEFAULT_PRETRAINED,
                     folder: Optional[PathLike] = None, stream=None, on_progress=None,
                     device="cpu") -> ClipEncoder:
    """Download (name, pretrained) once, with a progress bar, and check that it loads.

    With ``folder`` the weights end up there as one file that the search finds
    (``<name>-<tag>.safetensors`` from the Hugging Face hub, else OpenAI's own ``RN101.pt``), fetched
    straight into it; without, in the caches the search looks in (Hugging Face's, ``~/.cache/clip``).
    ``on_progress(done_bytes, total_bytes or None)`` follows a download into ``folder``. Returns the
    loaded encoder (on ``device``). Raises `WeightsNotFoundError` saying why and what to do instead.
    """
    import re
    import sys

    stream = stream if stream is not None else sys.stderr
    name, tag = clean_name(name), _clean_tag(pretrained)
    cfg = _pretrained_cfg(name, tag)
    manual = (f"put {official_file_name(name, tag)} into {folder or suggested_folder()} by hand "
              f"(see the README's Weights section)")
    if not cfg:
        raise WeightsNotFoundError(f"open_clip knows no pretrained tag {pretrained!r} for {name!r}, so there is "
                                   f"nothing to download: {manual}")
    if _offline():
        raise WeightsNotFoundError(f"Downloads are off (HF_HUB_OFFLINE / CLIPASSO_OFFLINE is set): unset it, or {manual}")
    errors: List[str] = []
    got: Optional[Path] = None
    repo, repo_file = _hf_repo(cfg)
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if repo and huggingface_hub is not None:
        host = _download_host(cfg)
        if host and not _reachable(host):
            errors.append(f"{host} cannot be reached")
        else:
            stream.write(f"{name} ({tag}): from huggingface.co/{repo}\n")
            try:
                remote = repo_file or HF_WEIGHT_NAMES[0]
                if folder is not None:  # straight into the folder (no second copy in the hub's cache)
                    dest = Path(folder) / f"{name}-{tag}{Path(remote).suffix}"
                    got = fetch_url(huggingface_hub.hf_hub_url(repo, remote), dest, label=dest.name, stream=stream,
                                    on_progress=on_progress)
                else:
                    got = Path(huggingface_hub.hf_hub_download(repo, remote))
            except Exception as exc:  # noqa: BLE001 - network, auth, disk
                errors.append(f"Hugging Face hub: {type(exc).__name__}: {str(exc)[:200]}")
    url = cfg.get("url")
    if got is None and url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        host = parsed.hostname
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        if host and not _reachable(host, port):
            errors.append(f"{host} cannot be reached")
        else:
            m = re.search(r"/([0-9a-f]{64})/", url)
            dest = Path(folder or Path.home() / ".cache" / "clip") / os.path.basename(url)
            stream.write(f"{name} ({tag}): from {host}\n")
            try:
                got = fetch_url(url, dest, sha256=m.group(1) if m else None, label=dest.name, stream=stream,
                                on_progress=on_progress if folder is not None else None)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{host}: {type(exc).__name__}: {str(exc)[:200]}")
    if got is None:
        raise WeightsNotFoundError(f"Could not download CLIP {name} ({tag}): {'; '.join(errors) or 'no source'}. "
                                   f"Run again when online, or {manual}.")
    forget(got)  # a file just (re)written must be read again
    return load_clip(name, pretrained, weights=got, allow_download=False, device=device)
