"""Saliency maps: where a ViT looks, which decides where CLIPasso's strokes start.

Methods of `saliency_map` (all return ``[H, W]`` float32 in 0..1 at the input's resolution):

- ``clip-attention`` (default; what the released CLIPasso code does): one forward pass of a CLIP
  ViT; per block the attention probabilities are averaged over heads, the CLS row over the patch
  columns is taken, these are averaged over ALL blocks, upsampled (bicubic) to the image and
  min-max normalised. No gradients, no text.
- ``clip-relevancy`` (what the paper describes; Chefer et al. 2021, "Generic attention-model
  explainability"): per block, the attention map weighted by the gradient of a score with respect
  to it, positive part, head mean; relevance is accumulated as ``R <- R + A_bar @ R`` from the
  identity, and the CLS row over patches is the map. The score is the dot product of the image
  embedding with itself (detached) or, with ``text``, the cosine with the text embedding.
- ``timm-vit``: last-block CLS attention (head mean) of a timm ViT, e.g. a DINO checkpoint, given
  as a model or loaded by name and local file with `load_timm_vit`.
- ``mask``: the matting mask itself, for when no ViT is wanted.

The attention probabilities come from our own forward pass through open_clip's
``VisionTransformer`` blocks (q, k, v from the blocks' own projection weights), which reproduces the
model's output (tested). Position embeddings are interpolated, so any patch size and input size
work; non-square images keep their aspect ratio on a non-square patch grid.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..errors import ClipassoError
from ..prepare.xdog import image_chw
from ..settings import ModelSettings, PlaceSettings, SketchSettings

log = logging.getLogger(__name__)

METHODS = ("clip-attention", "clip-relevancy", "timm-vit", "mask")
DEFAULT_METHOD = PlaceSettings.saliency
DEFAULT_TIMM_MODEL = "vit_small_patch8_224.dino"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SaliencyError(ClipassoError, ValueError):
    """Bad arguments or an unusable model for a saliency map; the message says what to change."""


# ---------------------------------------------------------------------------- small helpers
def normalize_map(m: torch.Tensor) -> torch.Tensor:
    """Min-max to 0..1; a constant map becomes all ones (every pixel equally salient)."""
    m = m.float()
    lo, hi = float(m.min()), float(m.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise SaliencyError("the saliency map contains NaN or infinity (a broken model or input)")
    if hi - lo <= 1e-12:
        return torch.ones_like(m)
    return (m - lo) / (hi - lo)


def grid_for(height: int, width: int, size: int, patch: int) -> Tuple[int, int]:
    """Patch grid (rows, cols) for an image scaled so its longer side is about ``size`` pixels."""
    scale = size / max(height, width)
    return (max(1, round(height * scale / patch)), max(1, round(width * scale / patch)))


def _prepare(image: torch.Tensor, grid: Tuple[int, int], patch: int, mean, std, device, dtype) -> torch.Tensor:
    """[3,H,W] 0..1 -> normalised [1,3,grid*patch] model input."""
    size = (grid[0] * patch, grid[1] * patch)
    x = image.unsqueeze(0)
    if tuple(x.shape[-2:]) != size:
        down = x.shape[-2] > size[0] or x.shape[-1] > size[1]
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=down).clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - m) / s).to(device=device, dtype=dtype)


def _upsample(grid_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[gh, gw] -> [H, W] bicubic (as the original), min-max normalised."""
    up = F.interpolate(grid_map[None, None].float(), size=(height, width), mode="bicubic", align_corners=False)
    return normalize_map(up[0, 0])


def _resize_mask(mask, height: int, width: int) -> torch.Tensor:
    m = mask.detach() if isinstance(mask, torch.Tensor) else torch.as_tensor(mask)
    m = m.float().cpu()
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise SaliencyError(f"mask must be a 2-D map [H, W] (1 = object); got shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1 + 1e-3:
        raise SaliencyError("mask values must lie in 0..1 (1 = object)")
    if tuple(m.shape) != (height, width):
        m = F.interpolate(m[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return m.clamp(0, 1)


# ---------------------------------------------------------------------------- open_clip ViT
def _check_vit(encoder) -> torch.nn.Module:
    if encoder is None:
        raise SaliencyError(
            "this saliency method needs a CLIP ViT encoder: "
            "clipasso.models.load_clip('ViT-B-32') (or pass method='mask')"
        )
    visual = getattr(encoder, "visual", None)
    if visual is None and hasattr(encoder, "transformer") and hasattr(encoder, "conv1"):
        visual = encoder  # a bare open_clip VisionTransformer
    needed = ("conv1", "class_embedding", "positional_embedding", "transformer", "ln_pre")
    if visual is None or not all(hasattr(visual, n) for n in needed):
        name = getattr(encoder, "name", type(encoder).__name__)
        raise SaliencyError(
            f"saliency from CLIP attention needs a CLIP ViT (e.g. ViT-B-32); {name!r} is not "
            "one (a ResNet has no attention maps). Load a ViT for saliency, or use "
            "method='mask' or 'timm-vit'."
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise SaliencyError(
            "CLIP ViTs with an attentional pooler (CoCa) are not supported for saliency; "
            "use a plain CLIP ViT such as ViT-B-32"
        )
    return visual


def _patch_size(visual) -> int:
    ps = getattr(visual, "patch_size", None)
    if ps is None:
        ps = visual.conv1.kernel_size
    ps = ps[0] if isinstance(ps, (tuple, list)) else ps
    return int(ps)


def _native_grid(visual) -> Tuple[int, int]:
    g = getattr(visual, "grid_size", None)
    if g is not None:
        return int(g[0]), int(g[1])
    n = visual.positional_embedding.shape[0] - 1
    side = int(round(math.sqrt(n)))
    return side, side


def position_embedding(visual, grid: Tuple[int, int]) -> torch.Tensor:
    """The ViT's position embeddings [1 + gh*gw, D], bicubic-interpolated when the grid differs."""
    pos = visual.positional_embedding
    native = _native_grid(visual)
    if tuple(grid) == tuple(native):
        return pos
    cls, patches = pos[:1], pos[1:]
    d = patches.shape[-1]
    p = patches.reshape(1, native[0], native[1], d).permute(0, 3, 1, 2).float()
    p = F.interpolate(p, size=tuple(grid), mode="bicubic", align_corners=False)
    p = p.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], d).to(pos.dtype)
    return torch.cat([cls, p], dim=0)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = t.shape
    return t.reshape(b, n, heads, d // heads).transpose(1, 2)  # B, heads, N, head_dim


def _mha_with_probs(attn: torch.nn.MultiheadAttention, h: torch.Tensor):
    """Self-attention of an nn.MultiheadAttention (batch-first input) computed explicitly."""
    if getattr(attn, "in_proj_weight", None) is None or attn.bias_k is not None or attn.add_zero_attn:
        raise SaliencyError(
            "unsupported attention layer (separate q/k/v projections or bias_k); use a standard CLIP ViT"
        )
    heads = attn.num_heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_split_heads(t, heads) for t in (q, k, v))
    logits = (q.float() @ k.float().transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    probs = logits.softmax(dim=-1)
    out = (probs.to(v.dtype) @ v).transpose(1, 2).reshape(h.shape)
    return attn.out_proj(out), probs


def _custom_attn_with_probs(attn, h: torch.Tensor):
    """open_clip's own `Attention` (qk-norm, scaled cosine, head scale variants) computed explicitly."""
    heads = attn.num_heads
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_split_heads(t, heads) for t in (q, k, v))
    if getattr(attn, "logit_scale", None) is not None:
        logits = F.normalize(q.float(), dim=-1) @ F.normalize(k.float(), dim=-1).transpose(-1, -2)
        logits = logits * torch.clamp(attn.logit_scale, max=attn.logit_scale_max).exp().float()
    else:
        q, k = attn.ln_q(q), attn.ln_k(k)
        logits = (q.float() * attn.scale) @ k.float().transpose(-1, -2)
    probs = logits.softmax(dim=-1)
    out = probs.to(v.dtype) @ v
    if getattr(attn, "head_scale", None) is not None:
        out = out * attn.head_scale
    out = out.transpose(1, 2).reshape(h.shape)
    out = attn.ln_inner(out)
    return attn.out_proj(out), probs


def vit_forward_with_attention(visual, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Image embedding [B, E] and each block's attention probabilities [B, heads, L, L].

    ``x`` is a normalised image batch whose sides are multiples of the patch size. Mirrors open_clip's
    VisionTransformer.forward in eval mode, with the attention weights made explicit.
    """
    patch = _patch_size(visual)
    grid = (x.shape[-2] // patch, x.shape[-1] // patch)
    t = visual.conv1(x)  # B, D, gh, gw
    t = t.reshape(t.shape[0], t.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(t.dtype).view(1, 1, -1).expand(t.shape[0], -1, -1)
    t = torch.cat([cls, t], dim=1) + position_embedding(visual, grid).to(t.dtype)
    t = visual.ln_pre(t)
    probs_all = []
    for blk in visual.transformer.resblocks:
        if getattr(blk, "ln_1_kv", None) is not None:
            raise SaliencyError("cross-attention blocks are not supported for saliency")
        h = blk.ln_1(t)
        if isinstance(blk.attn, torch.nn.MultiheadAttention):
            out, probs = _mha_with_probs(blk.attn, h)
            t = t + blk.ls_1(out)
        else:
            out, probs = _custom_attn_with_probs(blk.attn, h)
            t = t + blk.ls_1(getattr(blk, "ln_attn", torch.nn.Identity())(out))
        t = t + blk.ls_2(blk.mlp(blk.ln_2(t)))
        probs_all.append(probs)
    if hasattr(visual, "_pool"):
        pooled, _ = visual._pool(t)
    else:  # older open_clip
        pooled = visual.ln_post(t[:, 0])
    if getattr(visual, "proj", None) is not None:
        pooled = pooled @ visual.proj
    return pooled, probs_all


def _encoder_input(image: torch.Tensor, encoder, visual, size: Optional[int]):
    patch = _patch_size(visual)
    size = int(size or getattr(encoder, "image_size", None) or patch * _native_grid(visual)[0])
    if size < patch:
        raise SaliencyError(f"saliency input size {size} is smaller than one ViT patch ({patch} px)")
    grid = grid_for(image.shape[-2], image.shape[-1], size, patch)
    param = next(visual.parameters())
    mean = getattr(encoder, "mean", None) or (0.48145466, 0.4578275, 0.40821073)
    std = getattr(encoder, "std", None) or (0.26862954, 0.26130258, 0.27577711)
    return _prepare(image, grid, patch, mean, std, param.device, param.dtype), grid


def clip_attention_map(image, encoder, size: Optional[int] = None) -> torch.Tensor:
    """CLIPasso's saliency: head- and block-averaged CLS-to-patch attention, [H, W] in 0..1."""
    img = image_chw(image)
    visual = _check_vit(encoder)
    x, grid = _encoder_input(img, encoder, visual, size)
    with torch.no_grad():
        _, probs = vit_forward_with_attention(visual, x)
    cls_rows = torch.stack([p.float().mean(dim=1)[0, 0, 1:] for p in probs])  # blocks, patches
    return _upsample(cls_rows.mean(0).reshape(grid).cpu(), img.shape[-2], img.shape[-1])


def _text_embedding(encoder, text, device, dtype) -> torch.Tensor:
    if isinstance(text, torch.Tensor) and text.is_floating_point():
        return text.detach().reshape(1, -1).to(device=device, dtype=torch.float32)
    model = getattr(encoder, "model", None)
    if model is None or not hasattr(model, "encode_text"):
        raise SaliencyError("a text prompt needs the full CLIP model (a ClipEncoder from load_clip)")
    if isinstance(text, str):
        import open_clip

        ctx = int(getattr(model, "context_length", 77))
        try:
            tok = open_clip.get_tokenizer(getattr(encoder, "name", "ViT-B-32"), context_length=ctx)
        except Exception:  # noqa: BLE001 - custom model names: OpenAI's BPE tokenizer
            tok = open_clip.get_tokenizer("ViT-B-32", context_length=ctx)
        tokens = tok([text])
    elif isinstance(text, torch.Tensor):
        tokens = text.reshape(1, -1).long()
    else:
        raise SaliencyError(
            f"text must be a prompt string, token ids or an embedding tensor; got {type(text).__name__}"
        )
    vocab = int(getattr(model, "vocab_size", 0) or model.token_embedding.num_embeddings)
    if int(tokens.max()) >= vocab:
        raise SaliencyError(
            f"the prompt's token ids exceed this model's vocabulary ({vocab}); "
            "use the tokenizer that belongs to the model or pass a text embedding"
        )
    with torch.no_grad():
        emb = model.encode_text(tokens.to(device))
    return emb.float().reshape(1, -1)


def clip_relevancy_map(image, encoder, text=None, size: Optional[int] = None) -> torch.Tensor:
    """Gradient-weighted attention relevance (Chefer et al. 2021) of the CLS token, [H, W] in 0..1."""
    img = image_chw(image)
    visual = _check_vit(encoder)
    # ComfyUI runs nodes under inference_mode; relevance needs a graph
    with torch.inference_mode(False), torch.enable_grad():
        x, grid = _encoder_input(img.clone(), encoder, visual, size)
        x = x.clone().requires_grad_(True)  # weights are frozen: the graph hangs on the input
        emb, probs = vit_forward_with_attention(visual, x)
        emb = emb.float()
        if text is None:
            score = (emb * emb.detach()).sum()
        else:
            t = _text_embedding(encoder, text, emb.device, emb.dtype)
            if t.shape[-1] != emb.shape[-1]:
                raise SaliencyError(
                    f"text embedding has {t.shape[-1]} values but the image embedding has "
                    f"{emb.shape[-1]}; they must come from the same CLIP model"
                )
            score = (F.normalize(emb, dim=-1) * F.normalize(t, dim=-1)).sum()
        grads = torch.autograd.grad(score, probs)
    with torch.no_grad():
        n = probs[0].shape[-1]
        rel = torch.eye(n, device=x.device, dtype=torch.float32)
        for a, g in zip(probs, grads):
            cam = (g.float() * a.float()).clamp(min=0).mean(dim=1)[0]  # head mean -> L, L
            rel = rel + cam @ rel
        row = rel[0, 1:]
    return _upsample(row.reshape(grid).cpu(), img.shape[-2], img.shape[-1])


# ---------------------------------------------------------------------------- timm ViT (e.g. DINO)
def load_timm_vit(
    name: str = DEFAULT_TIMM_MODEL, weights=None, allow_download: bool = False, device="cpu", **kwargs
) -> torch.nn.Module:
    """A frozen eval-mode timm ViT. ``weights``: a local .pth/.bin/.safetensors (DINO's own
    checkpoints work through timm's converters). Without a file, timm's download is used only when
    ``allow_download``. Extra ``kwargs`` go to `timm.create_model` (e.g. depth for small tests)."""
    import os

    import timm

    kwargs = dict(kwargs)
    kwargs.setdefault("num_classes", 0)
    kwargs.setdefault("dynamic_img_size", True)  # any input size: interpolated position embeddings
    if weights is not None:
        path = os.path.expanduser(os.fspath(weights))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"timm ViT weights not found: {path}. Check the path, or give the model name "
                "only and allow the download."
            )
        try:
            model = _timm_from_file(timm, name, path, kwargs)
        except Exception as exc:  # noqa: BLE001 - wrong file for the architecture, unknown name, ...
            raise SaliencyError(f"could not build timm model {name!r} from {path}: {exc}") from exc
    elif allow_download:
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - offline
            raise FileNotFoundError(
                f"timm could not load pretrained weights for {name!r} ({exc}). Download the "
                "checkpoint and pass it as a file (weights=...)."
            ) from exc
    else:
        raise FileNotFoundError(
            f"no weights file for timm model {name!r}: pass weights=<file> "
            "(e.g. DINO's dino_deitsmall8_pretrain.pth) or allow the download"
        )
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model


def _timm_from_file(timm, name: str, path: str, kwargs: dict) -> torch.nn.Module:
    """The timm model ``name`` with the weights of ``path``, read by our own `read_checkpoint` (safetensors,
    ``weights_only=True``, TorchScript as data): timm's own file loading would use ``torch.load`` without
    ``weights_only`` in the older timm/torch versions we accept, and that runs code from the file."""
    import importlib

    from ..models import read_checkpoint

    state, _fmt = read_checkpoint(path)
    model = timm.create_model(name, pretrained=False, **kwargs)
    convert = getattr(importlib.import_module(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is not None:  # timm's converter for this family (DINO / original ViT layouts, position sizes)
        state = convert(state, model)
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "head"
    own = model.state_dict()
    for key in [k for k in state if k.startswith(head + ".")]:
        if key not in own or own[key].shape != state[key].shape:  # num_classes=0, or another class count
            del state[key]
    model.load_state_dict(state, strict=True)
    return model


def timm_attention_map(image, model, size: Optional[int] = None) -> torch.Tensor:
    """Last-block CLS-to-patch attention of a timm ViT (head mean), [H, W] in 0..1."""
    img = image_chw(image)
    blocks = getattr(model, "blocks", None)
    if (
        blocks is None
        or len(blocks) == 0
        or not hasattr(blocks[-1], "attn")
        or not hasattr(blocks[-1].attn, "attn_drop")
    ):
        raise SaliencyError(
            f"{type(model).__name__} is not a timm VisionTransformer with attention blocks; "
            "use e.g. vit_small_patch8_224.dino"
        )
    pe = model.patch_embed
    ps = pe.patch_size
    patch = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
    native = pe.img_size if getattr(pe, "img_size", None) is not None else (224, 224)
    native = tuple(native) if isinstance(native, (tuple, list)) else (native, native)
    dynamic = bool(getattr(model, "dynamic_img_size", False) or getattr(pe, "dynamic_img_pad", False))
    if dynamic:
        grid = grid_for(img.shape[-2], img.shape[-1], int(size or max(native)), patch)
    else:  # fixed-size model: the image is resized to its native size
        grid = (native[0] // patch, native[1] // patch)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    param = next(model.parameters())
    x = _prepare(img, grid, patch, mean, std, param.device, param.dtype)

    attn = blocks[-1].attn
    captured = []
    hook = attn.attn_drop.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    fused = getattr(attn, "fused_attn", None)
    try:
        if fused is not None:
            attn.fused_attn = False  # the explicit path runs softmax -> attn_drop, where we listen
        with torch.no_grad():
            model.forward_features(x)
    finally:
        hook.remove()
        if fused is not None:
            attn.fused_attn = fused
    if not captured:
        raise SaliencyError("could not read attention weights from this timm model's last block")
    a = captured[-1].float().mean(dim=1)[0]  # heads mean -> L, L
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    row = a[0, prefix:]
    if row.numel() != grid[0] * grid[1]:
        raise SaliencyError(f"unexpected token count {row.numel() + prefix} for a {grid[0]}x{grid[1]} patch grid")
    return _upsample(row.reshape(grid).cpu(), img.shape[-2], img.shape[-1])


# ---------------------------------------------------------------------------- entry point
_TIMM_CACHE = {}


def _cached_timm_vit(name: str, weights, allow_download: bool):
    import os

    key = (name, None if weights is None else os.path.abspath(os.fspath(weights)))
    if key not in _TIMM_CACHE:
        _TIMM_CACHE[key] = load_timm_vit(name, weights=weights, allow_download=allow_download)
    return _TIMM_CACHE[key]


def saliency_map(
    image,
    settings=None,
    *,
    encoder=None,
    mask=None,
    size: Optional[int] = None,
    method=None,
    text=None,
    weights=None,
    models_dir=None,
    allow_download: Optional[bool] = None,
    **overrides,
) -> torch.Tensor:
    """Saliency ``[H, W]`` float32 in 0..1 for ``image`` (anything `as_rgb` takes; ``[3,H,W]`` 0..1).

    settings: a `PlaceSettings` or a whole `SketchSettings` (None: the defaults) with ``overrides`` of its
    fields (``saliency``, the method; ``saliency_text``), validated by the settings; ``method`` and
    ``text`` are the same two by their own names. ``weights``, ``models_dir`` and ``allow_download``
    default to a whole `SketchSettings`' ``saliency_weights``, ``models_dir`` and ``allow_download``.
    encoder: a `ClipEncoder` with a ViT (``clip-*``; loaded as ViT-B-32/openai from ``models_dir``
    when None) or, for ``timm-vit``, a timm ViT or its name (default DINO ViT-S/8) loaded from the
    checkpoint file ``weights``. mask: [H, W] object mask; the map for ``mask`` and a
    restriction (multiplied in) for the other methods. text: prompt for ``clip-relevancy``.
    size: ViT input size (longer side; default the encoder's own, 224).
    """
    if method is not None:
        overrides["saliency"] = method
    if text is not None:
        overrides["saliency_text"] = text
    st = PlaceSettings.of(settings, label=lambda n: {"saliency": "saliency method"}.get(n, n), **overrides)
    models = settings.models if isinstance(settings, SketchSettings) else ModelSettings()
    method, text = st.saliency, st.saliency_text
    weights = models.saliency_weights if weights is None else weights
    models_dir = models.models_dir if models_dir is None else models_dir
    allow_download = models.allow_download if allow_download is None else allow_download
    if method not in METHODS:  # "none": no map at all
        raise SaliencyError(f"saliency method {method!r} makes no map; choose one of: {', '.join(METHODS)}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0):
        raise SaliencyError(f"size must be a positive number of pixels (e.g. 224); got {size!r}")
    img = image_chw(image)
    h, w = img.shape[-2:]
    m = None if mask is None else _resize_mask(mask, h, w)
    if method == "mask":
        if m is None:
            raise SaliencyError(
                "saliency method 'mask' needs the matting mask (mask=...); "
                "turn background removal on or choose a ViT method"
            )
        return normalize_map(m) if float(m.max()) > 0 else torch.zeros(h, w)
    if method == "timm-vit":
        if encoder is None or isinstance(encoder, str):
            encoder = _cached_timm_vit(encoder or DEFAULT_TIMM_MODEL, weights, allow_download)
        out = timm_attention_map(img, encoder, size)
    else:
        if encoder is None:
            from ..models import DEFAULT_SALIENCY_MODEL, load_clip

            encoder = load_clip(DEFAULT_SALIENCY_MODEL, models_dir=models_dir, allow_download=allow_download)
        if text is not None and method == "clip-attention":
            log.info(
                "clip-attention ignores the text prompt (the original's saliency is text-free); "
                "use clip-relevancy for a text-guided map"
            )
        if method == "clip-attention":
            out = clip_attention_map(img, encoder, size)
        else:
            out = clip_relevancy_map(img, encoder, text=text, size=size)
    if m is not None:
        out = out * m
        out = out / out.max() if float(out.max()) > 0 else out
    return out.float()


CLIP_METHODS = ("clip-attention", "clip-relevancy")  # the methods that take a CLIP ViT
DEFAULT_SALIENCY_MODEL_NAME = ModelSettings.saliency_model


def saliency_for_settings(target, mask, s: SketchSettings, dev):
    """The saliency map [H, W] (float, CPU) of a whole `SketchSettings`' method for ``target`` restricted to
    ``mask`` (None for method 'none'); the CLIP ViT of the ``clip-*`` methods is loaded as the settings say."""
    method = s.saliency
    if method == "none":
        return None
    from ..models import load_clip

    sal_encoder = None
    if method in CLIP_METHODS:
        sal_encoder = load_clip(
            s.saliency_model,
            s.saliency_pretrained,
            weights=s.saliency_weights,
            models_dir=s.models_dir,
            device=dev,
            allow_download=s.allow_download,
        )
    elif method == "timm-vit" and s.saliency_model != DEFAULT_SALIENCY_MODEL_NAME:
        sal_encoder = s.saliency_model  # a timm model name (the default is DINO ViT-S/8)
    return saliency_map(target, s, encoder=sal_encoder, mask=mask).float().cpu()


__all__ = [
    "saliency_map",
    "saliency_for_settings",
    "clip_attention_map",
    "clip_relevancy_map",
    "timm_attention_map",
    "load_timm_vit",
    "vit_forward_with_attention",
    "position_embedding",
    "normalize_map",
    "grid_for",
    "SaliencyError",
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_TIMM_MODEL",
]
