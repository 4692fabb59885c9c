"""The open_clip model a state dict belongs to, built by open_clip.

The architecture comes from open_clip in every case: the named model's config
(`open_clip.get_model_config`), a custom config file beside the weights, or, for a file in OpenAI's
layout whose sizes differ from the named model, open_clip's own reading of the shapes
(`open_clip.model.build_model_from_openai_state_dict`, given the state dict in memory, never the file).
Whether a file fits the named model is checked on a weightless copy (built on the ``meta`` device), so
a file of another size costs no random initialisation of the wrong model. What stays here is the
choice between those and the messages.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from ..errors import ModelConfigError, WeightsFileError
from .checkpoint import describe_state, openai_layout_kind

log = logging.getLogger(__name__)


def named_config(name: str) -> dict:
    """open_clip's config of a model it knows by name."""
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ModelConfigError(
            f"unknown CLIP model {name!r}. Use an open_clip model name (e.g. RN101, RN50, ViT-B-32, ViT-B-16) "
            f"or put a config {name}.json beside its weights in the models folder."
        )
    return cfg


def build_model(name: str, cfg: dict, quick_gelu: bool) -> torch.nn.Module:
    """An open_clip model from a config dict, with open_clip's own classes (``create_model`` takes no
    config dict, and would log "No pretrained weights loaded ... initialized randomly" right before we
    load the weights)."""
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


def _adapted(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` with the differences between open_clip versions smoothed over (a scalar or 1-element
    ``logit_scale``; no ``logit_bias`` in a file for a model that has one)."""
    state = dict(state)
    ls = getattr(model, "logit_scale", None)
    if isinstance(ls, torch.Tensor) and "logit_scale" in state and state["logit_scale"].ndim != ls.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(ls.shape)
    if getattr(model, "logit_bias", None) is not None and "logit_bias" not in state and "logit_scale" in state:
        state["logit_bias"] = torch.zeros_like(model.logit_bias)
    return state


def load_weights(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` strictly (raises RuntimeError/ValueError when it does not fit)."""
    model.load_state_dict(_adapted(model, state), strict=True)


def mismatch(name: str, cfg: dict, quick_gelu: bool, state: Dict[str, torch.Tensor]) -> Optional[str]:
    """Why ``state`` does not fit the model ``cfg`` describes, or None when it fits (or cannot be told
    without building it: the real load then says). Checked on a copy without weights."""
    try:
        with torch.device("meta"):
            model = build_model(name, cfg, quick_gelu)
    except Exception:  # noqa: BLE001 - a tower that cannot be built on 'meta' (or an old torch)
        return None
    own = model.state_dict()
    state = _adapted(model, state)
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    sizes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or extra or sizes):
        return None
    why = []
    if sizes:
        k = sizes[0]
        why.append(
            f"{len(sizes)} tensors of other sizes, e.g. {k}: {tuple(state[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the model"
        )
    if missing:
        why.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if extra:
        why.append(f"{len(extra)} not in the model, e.g. {extra[0]}")
    return "; ".join(why)


def config_kind(cfg: dict) -> str:
    """ "ResNet", "ViT" or "timm": the kind of image tower an open_clip config describes."""
    v = cfg.get("vision_cfg", {})
    if v.get("timm_model_name"):
        return "timm"
    return "ResNet" if isinstance(v.get("layers"), (list, tuple)) else "ViT"


def describe_model(model: torch.nn.Module) -> str:
    """A short description of an open_clip CLIP's image tower, for messages."""
    v = model.visual
    if hasattr(v, "layer1"):
        blocks = tuple(len(getattr(v, f"layer{i}")) for i in range(1, 5))
        return f"a CLIP ResNet (blocks {blocks}, width {v.layer1[0].conv1.out_channels})"
    patch = getattr(v, "patch_size", None)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    return f"a CLIP ViT ({len(v.transformer.resblocks)} blocks, width {v.transformer.width}, patch {patch})"


def _from_openai_layout(state: Dict[str, torch.Tensor], quick_gelu: bool) -> torch.nn.Module:
    """The architecture a state dict in OpenAI's layout describes, built by open_clip, with the
    state's own values (open_clip stores them in fp16 the way OpenAI's files do; we keep fp32)."""
    from open_clip.model import build_model_from_openai_state_dict

    model = build_model_from_openai_state_dict(dict(state), quick_gelu=quick_gelu, cast_dtype=None)
    model.float()
    load_weights(model, state)
    return model


def model_for_state(
    name: str,
    state: Dict[str, torch.Tensor],
    fmt: str,
    path: Path,
    quick_gelu: bool,
    custom_cfg: Optional[dict] = None,
    named: Optional[dict] = None,
) -> Tuple[torch.nn.Module, str]:
    """(model holding ``state``, what architecture it is) or `WeightsFileError` saying why not.

    With ``custom_cfg`` (a config file beside the weights) that config must fit. Otherwise the named
    model's config (``named``, else `named_config`) is used when the file fits it; a file in OpenAI's
    layout of the same kind (ResNet or ViT) but other sizes gets the architecture its shapes describe,
    with a warning."""
    if custom_cfg is not None:
        model = build_model(name, custom_cfg, quick_gelu)
        try:
            load_weights(model, state)
        except (RuntimeError, ValueError) as exc:
            raise WeightsFileError(
                f"{path} ({fmt}) does not fit the config of {name!r} ({str(exc).splitlines()[0][:200]})"
            ) from exc
        return model, name
    named = named if named is not None else named_config(name)
    kind = openai_layout_kind(state)
    if kind is not None and kind != config_kind(named):
        raise WeightsFileError(
            f"{path} ({fmt}) holds {describe_state(state)}, but {name!r} is a CLIP "
            f"{config_kind(named)}: give the file that belongs to {name!r}"
        )
    why = mismatch(name, named, quick_gelu, state)
    if why is None:
        model = build_model(name, named, quick_gelu)
        try:
            load_weights(model, state)
            return model, name
        except (RuntimeError, ValueError) as exc:
            why = str(exc).splitlines()[0][:200]
    if kind is None:
        raise WeightsFileError(f"{path} ({fmt}) is not a CLIP checkpoint for {name!r} ({why})")
    try:
        model = _from_openai_layout(state, quick_gelu)
    except Exception as exc:  # noqa: BLE001 - odd shapes in the file: open_clip's reading fails
        raise WeightsFileError(f"{path} ({fmt}) does not fit CLIP model {name!r} ({why})") from exc
    described = describe_model(model)
    log.warning("%s holds %s, not the %s architecture; using the file's own architecture", path, described, name)
    return model, described
