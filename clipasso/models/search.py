"""Where weights files come from: the search order, the names a file may have, and the messages that
say where to put one. Nothing here opens a weights file or imports torch.

In order: an explicit ``weights=FILE`` (handled by the loader); each ``models_dir`` (one folder or a
list; ComfyUI passes ``models/clipasso``), then the folders in ``CLIPASSO_MODELS_DIR``; the caches
downloads go to (``~/.cache/clip/<OpenAI file>`` and the Hugging Face hub cache). A file is found by
name: ``RN101-openai.safetensors`` (.pt/.pth/.bin too), ``RN101_openai.*``, ``RN101.*``, OpenAI's own
``RN101.pt``, or a Hugging Face style sub-folder such as ``resnet101_clip.openai/open_clip_model.safetensors``.
A custom architecture is ``<models_dir>/<name>.json`` (an open_clip model config) beside its weights.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import ModelConfigError, WeightsNotFoundError
from ..settings import DEFAULT_PRETRAINED, MODELS_DIR_ENV

WEIGHT_EXTS = (".safetensors", ".pt", ".pth", ".bin")
HF_WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)

# --------------------------------------------------------------------------- names and paths


def clean_name(name: str) -> str:
    """open_clip spells 'ViT-B/32' as 'ViT-B-32'."""
    if not isinstance(name, str) or not name.strip():
        raise ModelConfigError(f"a CLIP model name must be a non-empty string, e.g. 'RN101'; got {name!r}")
    return name.strip().replace("/", "-")


def clean_tag(tag: Optional[str]) -> Optional[str]:
    if tag is None or str(tag).strip().lower() in ("", "none"):
        return None
    return str(tag).strip().lower().replace("-", "_")


def pretrained_cfg(name: str, tag: Optional[str]) -> dict:
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


def hf_repo(cfg: dict) -> Tuple[Optional[str], Optional[str]]:
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


def candidate_paths(name: str, pretrained: Optional[str] = DEFAULT_PRETRAINED, models_dir=None) -> List[Path]:
    """Every file path the loader looks at for (name, pretrained), in order (files may not exist)."""
    name = clean_name(name)
    tag = clean_tag(pretrained)
    cfg = pretrained_cfg(name, tag)
    official = os.path.basename(cfg.get("url", "")) or None
    repo, repo_file = hf_repo(cfg)
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


def _describe_paths(paths: Sequence[Path]) -> str:
    """Paths grouped by folder, one line per folder."""
    groups: Dict[str, List[str]] = {}
    for p in paths:
        parts = p.parts
        if "snapshots" in parts:  # Hugging Face cache: <cache>/models--x--y/snapshots/*/file
            i = parts.index("snapshots")
            folder, rest = str(Path(*parts[: i - 1])), str(Path(*parts[i - 1 :]))
        else:
            folder, rest = str(p.parent), p.name
        if p.parent.name and p.parent.name not in ("clip",) and "snapshots" not in parts and p.name in HF_WEIGHT_NAMES:
            folder, rest = str(p.parent.parent), f"{p.parent.name}/{p.name}"
        groups.setdefault(folder, []).append(rest)
    return "\n  ".join(f"{folder}/: {', '.join(names)}" for folder, names in groups.items())


def suggested_folder(models_dir=None) -> Path:
    """The folder a user should drop weight files into."""
    dirs = _models_dirs(models_dir)
    return dirs[0] if dirs else Path.home() / ".cache" / "clip"


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
            if ext not in WEIGHT_EXTS or not stem.startswith(("RN", "ViT-", "convnext", "EVA", "coca")):
                continue
            for sep in ("-", "_"):  # a pretrained tag after the name: "-openai", "-laion2b_s34b_b79k"
                head, _, tail = stem.rpartition(sep)
                if head and (tail == "openai" or (tail[:1].islower() and "_" in tail)):
                    stem = head
                    break
            names.add(stem.replace("-336px", "-336"))  # OpenAI's ViT-L/14@336 file name
    return sorted(names)


def find_weight_files(
    name: str, pretrained: Optional[str] = DEFAULT_PRETRAINED, models_dir=None
) -> Tuple[List[Path], List[Path]]:
    """(existing candidate files in search order, every path looked at)."""
    tried = candidate_paths(name, pretrained, models_dir)
    found: List[Path] = []
    for p in tried:
        hit = _existing(p)
        if hit is not None and all(str(hit) != str(f) for f in found):
            found.append(hit)
    return found, tried


def official_file_name(name: str, pretrained: Optional[str] = DEFAULT_PRETRAINED) -> str:
    """The file name a user should put into the models folder: OpenAI's own (``RN101.pt``) where
    there is one, else ``<name>-<tag>.safetensors``."""
    name, tag = clean_name(name), clean_tag(pretrained)
    cfg = pretrained_cfg(name, tag)
    official = os.path.basename(cfg.get("url", "")) if cfg else ""
    return official or f"{name}-{tag or 'weights'}.safetensors"


def missing_error(
    name: str,
    tag,
    pretrained,
    models_dir,
    tried: Sequence[Path],
    failures: Sequence[Tuple[Path, str]],
    download_note: str,
) -> WeightsNotFoundError:
    """The one error for "no usable weights": what to do first, then what was wrong with each file
    found, why nothing was downloaded, and every path looked at."""
    folder = suggested_folder(models_dir)
    fname = official_file_name(name, tag)
    cfg = pretrained_cfg(name, tag)
    dirs = _models_dirs(models_dir)
    flag = f" --models-dir {dirs[0]}" if dirs else ""
    online = f" or run `clipasso download-weights{flag}` once online" if cfg else ""
    lines = [
        f"Put {fname} (CLIP {name}, {tag or 'your'} weights) into {folder}{online}; "
        f"or give the file itself (--clip-weights / --saliency-weights, weights=...).",
        f"No usable weights for CLIP model {name!r} (pretrained {pretrained!r}) were found.",
    ]
    if failures:
        lines.append("Files found but not usable:")
        lines += [f"  {p}: {why}" for p, why in failures]
    if download_note:
        lines.append(f"Download: {download_note}.")
    repo, _ = hf_repo(cfg) if cfg else (None, None)
    if repo:
        lines.append(
            f"(The same weights as safetensors: open_clip_model.safetensors from huggingface.co/{repo}, "
            f"saved as {name}-{tag}.safetensors.)"
        )
    lines.append("Looked in:\n  " + _describe_paths(tried))
    return WeightsNotFoundError("\n".join(lines))


# --------------------------------------------------------------------------- custom configs


def read_json_config(path: Path) -> dict:
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


def find_config(name: str, weights: Optional[Path], models_dir) -> Tuple[Optional[dict], Optional[Path]]:
    """A custom JSON config: beside the weights file, or <models_dir>/<name>.json."""
    cands: List[Path] = []
    if weights is not None:
        cands += [weights.with_suffix(".json"), weights.parent / "open_clip_config.json"]
    for d in _models_dirs(models_dir):
        cands += [d / f"{name}.json", d / name / "open_clip_config.json"]
    for c in cands:
        if c.is_file():
            return read_json_config(c), c
    return None, None
