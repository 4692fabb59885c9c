"""Reading a weights file into a state dict, whatever its format; no code from the file ever runs.

Formats: safetensors; ``torch.save`` state dicts (``.pt/.pth/.bin``, read with ``weights_only=True``),
also wrapped in ``{"state_dict": ...}`` or with ``module.`` prefixes; OpenAI's released TorchScript
archives (``RN101.pt``, ``ViT-B-32.pt``, ...; fp16 or fp32), whose tensors `clipasso.models.archive`
reads as data. Whatever the file's dtype, floating tensors come out in fp32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from ..errors import WeightsFileError

PathLike = Union[str, os.PathLike]

# OpenAI's TorchScript archives keep these integers in their state dict; no model has them as weights.
_OPENAI_INT_BUFFERS = ("input_resolution", "context_length", "vocab_size")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREFIXES = ("module.", "_orig_mod.")


def is_torchscript_archive(path: PathLike) -> bool:
    """A TorchScript archive (``torch.jit.save``; OpenAI's released CLIP ``.pt`` files) rather than a
    ``torch.save`` state dict: both are zip files, only TorchScript's holds ``constants.pkl`` or code.
    Either one sends the file to `clipasso.models.archive` (``torch.load`` would hand it to ``torch.jit.load``
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
            # read as data: torch.jit.load would compile and run code from the file (see archive.py)
            from .archive import read_torchscript_state

            fmt = "TorchScript archive (OpenAI format)"
            obj = dict(read_torchscript_state(path))
        else:
            obj, fmt = torch.load(str(path), map_location="cpu", weights_only=True), "PyTorch state dict"
    except WeightsFileError:
        raise
    except pickle.UnpicklingError as exc:
        raise WeightsFileError(
            f"{path} holds pickled Python objects, not only tensors, so it is not loaded (weights_only=True "
            f"keeps a downloaded file from running code). Save its state_dict() instead. ({str(exc)[:160]})"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - truncated zips, bad headers, ... all come out here
        raise WeightsFileError(
            f"{path} is not a readable weights file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it may be truncated: download it again"
        ) from exc
    for _ in range(3):  # {"state_dict": {...}} and similar wrappers
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(
                isinstance(v, torch.Tensor) and k.startswith("visual.") for k, v in obj.items()
            ):
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
            state = {k[len(prefix) :]: v for k, v in state.items()}
    for k in _OPENAI_INT_BUFFERS:
        state.pop(k, None)
    if not state:
        raise WeightsFileError(f"{path} ({fmt}) holds no tensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return state, fmt


def openai_layout_kind(state: Dict[str, torch.Tensor]) -> Optional[str]:
    """ "ViT" or "ResNet" for a CLIP state dict in OpenAI's layout (which open_clip's CLIP shares), None
    for any other layout. Read from the keys only."""
    if not all(
        k in state for k in ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight")
    ):
        return None
    if "visual.proj" in state and "visual.conv1.weight" in state:
        return "ViT"
    if "visual.layer1.0.conv1.weight" in state and "visual.attnpool.positional_embedding" in state:
        return "ResNet"
    return None


def describe_state(state: Dict[str, torch.Tensor]) -> str:
    """A short description of what a state dict in OpenAI's layout holds, for messages."""
    kind = openai_layout_kind(state)
    if kind == "ViT":
        conv = state["visual.conv1.weight"]
        return f"a CLIP ViT (width {conv.shape[0]}, patch {conv.shape[-1]})"
    if kind == "ResNet":
        return f"a CLIP ResNet (width {state['visual.layer1.0.conv1.weight'].shape[0]})"
    return "a checkpoint of another layout"
