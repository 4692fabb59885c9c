"""CLIP checkpoints in the exact file format of OpenAI's released ``RN101.pt`` / ``ViT-B-32.pt``.

OpenAI published its CLIP weights as TorchScript archives: the model (in OpenAI's own module
layout and parameter names) was converted to fp16 (convolutions, linear layers, attention and the
two projection matrices; norms and embeddings stay fp32), traced, and saved with
``torch.jit.save``. The archive's state dict also carries three integer buffers,
``input_resolution``, ``context_length`` and ``vocab_size``. A user who downloaded those files (or
whose ``~/.cache/clip`` holds them from OpenAI's ``clip`` package) hands exactly that to us.

This module writes such files from a model written here, in that layout, at any size: small widths
for fast tests, or the real RN101 / ViT-B/32 architectures (random weights) for an end-to-end run.
It does not use OpenAI's ``clip`` package; only the file format matters.

    python clipasso/testing/openai_format.py OUT_DIR [--real]   # tiny (default) or real-size RN101.pt + ViT-B-32.pt
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """Computes in fp32 whatever the input's dtype (as OpenAI's did)."""

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


# --------------------------------------------------------------------------- ResNet tower


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        # anti-aliased strided convolution: average-pool first, then a stride-1 convolution
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """The mean of the feature map attends over all positions; its output is the embedding."""

    def __init__(self, grid: int, width: int, heads: int, out_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, out_dim)
        self.num_heads = heads

    def forward(self, x):
        n, c, h, w = x.shape
        tokens = x.reshape(n, c, h * w).permute(2, 0, 1)  # [HW, N, C]
        tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], 0)  # [1 + HW, N, C]
        tokens = tokens + self.positional_embedding[:, None, :].to(tokens.dtype)
        q = self.q_proj(tokens[:1])
        k = self.k_proj(tokens)
        v = self.v_proj(tokens)
        heads, d = self.num_heads, c // self.num_heads
        q = q.reshape(1, n * heads, d).transpose(0, 1)  # [N*heads, 1, d]
        k = k.reshape(-1, n * heads, d).transpose(0, 1)
        v = v.reshape(-1, n * heads, d).transpose(0, 1)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
        out = (attn @ v).transpose(0, 1).reshape(1, n, c)
        return self.c_proj(out)[0]


class ModifiedResNet(nn.Module):
    def __init__(self, layers: Sequence[int], out_dim: int, heads: int, resolution: int = 224, width: int = 64):
        super().__init__()
        self.input_resolution = resolution
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._stage(width, layers[0])
        self.layer2 = self._stage(width * 2, layers[1], stride=2)
        self.layer3 = self._stage(width * 4, layers[2], stride=2)
        self.layer4 = self._stage(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(resolution // 32, width * 32, heads, out_dim)

    def _stage(self, planes: int, blocks: int, stride: int = 1):
        mods = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x):
        x = x.type(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


# --------------------------------------------------------------------------- transformer towers


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x):
        mask = None if self.attn_mask is None else self.attn_mask.to(x.dtype)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, attn_mask=None):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int, out_dim: int):
        super().__init__()
        self.input_resolution = resolution
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out_dim))

    def forward(self, x):
        x = self.conv1(x.type(self.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid^2, width]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)  # [L, N, D]
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class OpenAICLIP(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        resolution: int,
        vision_layers,
        vision_width: int,
        vision_patch,
        context_length: int,
        vocab_size: int,
        text_width: int,
        text_heads: int,
        text_layers: int,
    ):
        super().__init__()
        self.context_length = context_length
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(vision_layers, embed_dim, vision_width * 32 // 64, resolution, vision_width)
        else:
            self.visual = VisionTransformer(
                resolution, vision_patch, vision_width, vision_layers, vision_width // 64, embed_dim
            )
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.transformer = Transformer(text_width, text_layers, text_heads, attn_mask=causal)
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, text_width).normal_(std=0.01))
        self.ln_final = LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim) * text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def encode_image(self, image):
        return self.visual(image.type(self.dtype))

    def encode_text(self, text):
        x = self.token_embedding(text).type(self.dtype) + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        img = self.encode_image(image)
        txt = self.encode_text(text)
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        logits = self.logit_scale.exp() * img @ txt.t()
        return logits, logits.t()


# --------------------------------------------------------------------------- sizes

TINY_RN = dict(
    embed_dim=32,
    resolution=224,
    vision_layers=(1, 1, 1, 1),
    vision_width=8,
    vision_patch=None,
    context_length=8,
    vocab_size=49408,
    text_width=64,
    text_heads=1,
    text_layers=1,
)
TINY_VIT = dict(
    embed_dim=32,
    resolution=224,
    vision_layers=2,
    vision_width=64,
    vision_patch=32,
    context_length=8,
    vocab_size=49408,
    text_width=64,
    text_heads=1,
    text_layers=1,
)
# OpenAI's published architectures (the shapes their files hold)
REAL = {
    "RN50": dict(
        embed_dim=1024,
        resolution=224,
        vision_layers=(3, 4, 6, 3),
        vision_width=64,
        vision_patch=None,
        context_length=77,
        vocab_size=49408,
        text_width=512,
        text_heads=8,
        text_layers=12,
    ),
    "RN101": dict(
        embed_dim=512,
        resolution=224,
        vision_layers=(3, 4, 23, 3),
        vision_width=64,
        vision_patch=None,
        context_length=77,
        vocab_size=49408,
        text_width=512,
        text_heads=8,
        text_layers=12,
    ),
    "ViT-B-32": dict(
        embed_dim=512,
        resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch=32,
        context_length=77,
        vocab_size=49408,
        text_width=512,
        text_heads=8,
        text_layers=12,
    ),
    "ViT-B-16": dict(
        embed_dim=512,
        resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch=16,
        context_length=77,
        vocab_size=49408,
        text_width=512,
        text_heads=8,
        text_layers=12,
    ),
}


def build_openai_model(cfg: dict, seed: int = 0) -> OpenAICLIP:
    """An fp32 model in OpenAI's layout with random weights and non-trivial norms/BN statistics
    (so every feature depends on the input, as in a trained network)."""
    torch.manual_seed(seed)
    model = OpenAICLIP(**cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def convert_to_fp16(model: nn.Module) -> nn.Module:
    """What OpenAI did before saving: convolutions, linear layers, attention and the two
    projection matrices to fp16; norms and embeddings stay fp32."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.weight.data = m.weight.data.half()
            if m.bias is not None:
                m.bias.data = m.bias.data.half()
        if isinstance(m, nn.MultiheadAttention):
            for name in (
                "in_proj_weight",
                "in_proj_bias",
                "bias_k",
                "bias_v",
                "q_proj_weight",
                "k_proj_weight",
                "v_proj_weight",
            ):
                t = getattr(m, name, None)
                if t is not None:
                    t.data = t.data.half()
            m.out_proj.weight.data = m.out_proj.weight.data.half()
            if m.out_proj.bias is not None:
                m.out_proj.bias.data = m.out_proj.bias.data.half()
        for name in ("text_projection", "proj"):
            t = getattr(m, name, None)
            if isinstance(t, nn.Parameter):
                t.data = t.data.half()
    return model


class _Archive(nn.Module):
    """The traced wrapper: OpenAI's archives expose forward / encode_image / encode_text and keep the
    three integer buffers in their state dict."""

    def __init__(self, model: OpenAICLIP, resolution: int):
        super().__init__()
        # the same parameter names as the model itself (no "model." prefix in the state dict)
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, p in model.named_parameters(recurse=False):
            self.register_parameter(name, p)
        self.register_buffer("input_resolution", torch.tensor(resolution))
        self.register_buffer("context_length", torch.tensor(model.context_length))
        self.register_buffer("vocab_size", torch.tensor(model.vocab_size))
        self._model = [model]  # not a submodule

    def encode_image(self, image):
        return self._model[0].encode_image(image)

    def encode_text(self, text):
        return self._model[0].encode_text(text)

    def forward(self, image, text):
        return self._model[0](image, text)


def save_openai_archive(model: OpenAICLIP, path, fp16: bool = True) -> str:
    """Trace ``model`` (fp32, in OpenAI's layout) and save it as a TorchScript archive; with
    ``fp16`` the weights in the file are converted as OpenAI's were. The model is not changed."""
    import copy

    model = copy.deepcopy(model).eval()
    res = model.visual.input_resolution
    image = torch.rand(1, 3, res, res)
    text = torch.zeros(1, model.context_length, dtype=torch.long)
    text[0, :3] = torch.tensor([1, 2, model.vocab_size - 1])
    wrapper = _Archive(model, res).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer notices
        traced = torch.jit.trace_module(
            wrapper, {"forward": (image, text), "encode_image": image, "encode_text": text}, check_trace=False
        )
    if fp16:
        # The traced graph is never run by the loader (only its state dict is read), so the weights are
        # converted after tracing, with the same rule as OpenAI's conversion.
        half = set()
        fp16_model = convert_to_fp16(copy.deepcopy(model))
        for name, p in fp16_model.named_parameters():
            if p.dtype == torch.float16:
                half.add(name)
        for name, p in traced.named_parameters():
            if name in half:
                p.data = p.data.half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, str(path))
    return str(path)


def state_dict_fp16_rounded(model: OpenAICLIP) -> dict:
    """The model's weights as the fp16 archive holds them, back in fp32 (what a loader should end up with)."""
    fp16_model = convert_to_fp16(__import__("copy").deepcopy(model))
    return {k: v.float() for k, v in fp16_model.state_dict().items()}


def write_openai_files(folder, real: bool = False, fp16: bool = True, seed: int = 0) -> dict:
    """``RN101.pt`` and ``ViT-B-32.pt`` in OpenAI's format in ``folder``: tiny, or the real architectures."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, cfg, s in (
        ("RN101", REAL["RN101"] if real else TINY_RN, seed),
        ("ViT-B-32", REAL["ViT-B-32"] if real else TINY_VIT, seed + 1),
    ):
        model = build_openai_model(cfg, s)
        out[name] = save_openai_archive(model, folder / f"{name}.pt", fp16=fp16)
        out[name + "_model"] = model
    return out


class LocalDownloads:
    """OpenAI's download server, played on 127.0.0.1: files published as ``<base>/<sha256>/<name>`` (the
    layout of OpenAI's URLs, whose hash `clipasso.models.download_weights` checks), served over real HTTP
    from ``root`` until `close` (also on leaving a ``with`` block)."""

    def __init__(self, root):
        import functools
        import http.server
        import threading
        from pathlib import Path

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(self.root))
        handler.log_message = lambda *a, **k: None
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._open = True

    def publish(self, name: str, data: bytes) -> str:
        """Serve ``data`` as OpenAI would serve ``name``; returns its URL."""
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        (self.root / sha).mkdir(parents=True, exist_ok=True)
        (self.root / sha / name).write_bytes(data)
        return f"{self.base}/{sha}/{name}"

    def close(self) -> None:
        """Stop serving and close the socket (a later download is refused at once)."""
        if self._open:
            self._open = False
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def registry_entry_at(real_cfg, model: str, url: str):
    """A stand-in for `clipasso.models.search.pretrained_cfg` whose entry for ``model`` names ``url`` (and no
    Hugging Face repository): open_clip's registry pointed at `LocalDownloads`, the rest unchanged."""

    def cfg(name, tag):
        out = real_cfg(name, tag)
        if name == model and out:
            out = {k: v for k, v in out.items() if k != "hf_hub"}
            out["url"] = url
        return out

    return cfg


if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    files = write_openai_files(args[0] if args else "openai_files", real="--real" in sys.argv)
    for k, v in files.items():
        if isinstance(v, str):
            print(k, v)
