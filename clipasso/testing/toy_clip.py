"""A toy CLIP trained here, on line drawings of a few shapes, for measuring text guidance.

No pretrained CLIP weights can be downloaded on the machines this project is built on, and a
randomly initialised text tower means nothing: "a square" and "a circle" are two random vectors.
To see whether the text term steers a sketch at all, and how strongly a given ``text_weight``
does, the model needs words that mean something. This script trains a small open_clip model (a
CLIP ModifiedResNet image tower at 112 px, a transformer text tower, open_clip's real tokenizer)
contrastively on drawings of six shapes made with this project's own rasterizer, drawn the way CLIPasso's sketches look:
outlines broken into short jittered strokes of varying width, some strokes missing, a few stray
ones, seen through CLIPasso's own perspective-and-crop augmentation.

It is a toy: six words, line drawings only. It says nothing about photographs or about the
absolute weight that suits a real RN101; it does let the text term be measured end to end.

    python -m clipasso.testing.toy_clip OUT_DIR [--steps 1200] [--seed 0]

writes ``OUT_DIR/<name>.json`` (the open_clip config) and ``OUT_DIR/<name>.safetensors``, loadable
by name through `clipasso.models.load_clip(name, models_dir=OUT_DIR)` like any custom model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from clipasso.objective.losses import apply_augment, sample_augment_params
from clipasso.models import OPENAI_MEAN, OPENAI_STD
from clipasso.render.raster import rasterize

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
TEMPLATES = ("a {}", "a sketch of a {}", "a drawing of a {}", "{}")
SIZE = 224
RING = 30  # points around every outline
SEG_PER_STROKE = 3  # an outline is drawn as RING / SEG_PER_STROKE strokes
STRAY = 2  # extra random strokes per drawing (some made invisible)

INPUT = 112  # the encoder's input: 224 px drawings are box-downsampled, as the loss does
TOY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": INPUT, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


# --------------------------------------------------------------------------- shapes


def _polygon(name: str) -> torch.Tensor:
    """Vertices [V, 2] of the closed outline of a shape, centred, about unit radius."""
    if name == "circle":
        t = torch.linspace(0, 2 * math.pi, 65)[:-1]
        return torch.stack([t.cos(), t.sin()], -1)
    if name == "square":
        return torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * 0.8
    if name == "triangle":
        a = torch.tensor([-90.0, 30.0, 150.0]) * math.pi / 180
        return torch.stack([a.cos(), a.sin()], -1)
    if name == "star":
        a = torch.arange(10) * math.pi / 5 - math.pi / 2
        r = torch.where(torch.arange(10) % 2 == 0, torch.tensor(1.0), torch.tensor(0.42))
        return torch.stack([r * a.cos(), r * a.sin()], -1)
    if name == "heart":
        t = torch.linspace(0, 2 * math.pi, 65)[:-1]
        x = 16 * t.sin() ** 3
        y = -(13 * t.cos() - 5 * (2 * t).cos() - 2 * (3 * t).cos() - (4 * t).cos())
        pts = torch.stack([x, y], -1)
        pts = pts - pts.mean(0)
        return pts / pts.abs().max()
    if name == "cross":
        a, b = 1.0, 0.33
        return torch.tensor(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        )
    raise ValueError(f"unknown shape {name!r}; choose one of {SHAPES}")


def _resample_closed(poly: torch.Tensor, n: int, start: int) -> torch.Tensor:
    """``n`` points along the closed outline: every vertex kept (corners stay sharp), the rest spread
    over the edges by length; the list starts at vertex ``start``."""
    v = len(poly)
    nxt = torch.roll(poly, -1, 0)
    length = (nxt - poly).norm(dim=-1)
    if v >= n:
        idx = torch.linspace(0, v, n + 1)[:-1].long()
        return torch.roll(poly[idx], -(start % n), 0)
    extra = length / length.sum() * (n - v)
    per = extra.floor().long()
    rest = n - v - int(per.sum())
    per[torch.argsort(extra - per, descending=True)[:rest]] += 1
    out = []
    for i in range(v):
        k = int(per[i]) + 1
        t = (torch.arange(k) / k).unsqueeze(-1)
        out.append(poly[i] + t * (nxt[i] - poly[i]))
    pts = torch.cat(out)
    first = int(torch.cat([torch.zeros(1, dtype=torch.long), (per + 1).cumsum(0)])[start % v])
    return torch.roll(pts, -first, 0)


def _line_cubic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Control points [..., 4, 2] of straight cubics from a to b."""
    return torch.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b], -2)


def shape_strokes(name: str, g: torch.Generator, clean: bool = False):
    """One drawing of ``name``: points [S, 1+3k, 2], half-widths [S], alphas [S] (canvas pixels)."""

    def u(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    poly = _polygon(name)
    if clean:
        rot, sx, sy, radius, cx, cy = 0.0, 1.0, 1.0, 0.33 * SIZE, SIZE / 2, SIZE / 2
    else:
        rot = u(-0.45, 0.45) if name != "circle" else u(0, 2 * math.pi)
        aspect = u(0.8, 1.25)
        sx, sy = math.sqrt(aspect), 1 / math.sqrt(aspect)
        radius = u(0.2, 0.42) * SIZE
        cx, cy = u(radius + 8, SIZE - radius - 8), u(radius + 8, SIZE - radius - 8)
    c, s = math.cos(rot), math.sin(rot)
    rotm = torch.tensor([[c, -s], [s, c]])
    ring = _resample_closed(poly, RING, 0 if clean else int(torch.randint(0, len(poly), (), generator=g)))
    ring = (ring * torch.tensor([sx, sy])) @ rotm.T * radius + torch.tensor([cx, cy])
    if not clean:
        ring = ring + torch.randn(ring.shape, generator=g) * u(0.003, 0.025) * radius
    nxt = torch.roll(ring, -1, 0)
    cubics = _line_cubic(ring, nxt)  # [RING, 4, 2]
    n_str = RING // SEG_PER_STROKE
    pts = []
    for k in range(n_str):
        cs = cubics[k * SEG_PER_STROKE : (k + 1) * SEG_PER_STROKE]
        pts.append(torch.cat([cs[0, :1], cs[:, 1:].reshape(-1, 2)]))
    pts = torch.stack(pts)  # [n_str, 1+3*SEG, 2]
    alphas = torch.ones(n_str)
    widths = torch.full((n_str,), 1.5 if clean else u(0.7, 2.2))
    if not clean:
        alphas = (torch.rand(n_str, generator=g) > u(0.0, 0.2)).float()
        # stray strokes: random short curves, each drawn with probability 1/2
        start = torch.rand(STRAY, 1, 2, generator=g) * SIZE
        stray = start + torch.randn(STRAY, 1 + 3 * SEG_PER_STROKE, 2, generator=g).cumsum(1) * 6
        pts = torch.cat([pts, stray])
        alphas = torch.cat([alphas, (torch.rand(STRAY, generator=g) < 0.5).float()])
        widths = torch.cat([widths, widths[:STRAY]])
    else:
        pad = torch.zeros(STRAY, pts.shape[1], 2)
        pts = torch.cat([pts, pad])
        alphas = torch.cat([alphas, torch.zeros(STRAY)])
        widths = torch.cat([widths, widths[:STRAY]])
    return pts, widths, alphas


@torch.no_grad()
def draw_batch(labels: List[int], g: torch.Generator, clean: bool = False) -> torch.Tensor:
    """Images [N, 3, SIZE, SIZE] in 0..1 (black lines on white) of the shapes with these labels."""
    items = [shape_strokes(SHAPES[i], g, clean) for i in labels]
    pts = torch.stack([p for p, _, _ in items])
    widths = torch.stack([w for _, w, _ in items])
    alphas = torch.stack([a for _, _, a in items])
    colors = torch.zeros(len(items), pts.shape[1], 4)
    colors[..., 3] = alphas
    image, _ = rasterize(pts, widths, colors, SIZE, SIZE)
    return image


def normalise(images: torch.Tensor) -> torch.Tensor:
    """0..1 drawings at any size -> the encoder's normalised input (area downsampling, like the loss)."""
    if images.shape[-1] != INPUT:
        images = F.interpolate(images, size=(INPUT, INPUT), mode="area")
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    return (images - mean) / std


# --------------------------------------------------------------------------- training


def _tokens(context_length: int) -> torch.Tensor:
    import open_clip

    tok = open_clip.tokenize  # the SimpleTokenizer open_clip pairs with OpenAI-style models
    prompts = [t.format(s) for t in TEMPLATES for s in SHAPES]
    return tok(prompts, context_length=context_length).view(len(TEMPLATES), len(SHAPES), -1)


def train(
    steps: int = 1200,
    seed: int = 0,
    batch: int = 48,
    lr: float = 2e-3,
    log_every: int = 100,
    threads: Optional[int] = None,
) -> Dict:
    """Train the toy model; returns {'model', 'history', 'seconds'}."""
    import open_clip

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TOY_CONFIG)
    model.train()
    tokens = _tokens(TOY_CONFIG["text_cfg"]["context_length"])  # [T, K, L]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed + 12345)
    history, t0, run_loss, run_acc = [], time.perf_counter(), 0.0, 0.0
    for step in range(1, steps + 1):
        labels = torch.randint(0, len(SHAPES), (batch,), generator=g)
        images = draw_batch(labels.tolist(), g)
        aug = torch.rand(batch, generator=g) < 0.6  # CLIPasso's own views on most drawings
        if bool(aug.any()):
            params = sample_augment_params(int(aug.sum()), (SIZE, SIZE), g)
            images[aug] = apply_augment(images[aug], params)  # black outside the warp, as in the loss
        img = F.normalize(model.encode_image(normalise(images)), dim=-1)
        tmpl = int(torch.randint(0, len(TEMPLATES), (), generator=g))
        txt = F.normalize(model.encode_text(tokens[tmpl]), dim=-1)  # [K, D]
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += float(loss.detach())
        run_acc += float((logits.argmax(1) == labels).float().mean())
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            history.append(
                {"step": step, "loss": run_loss / n, "acc": run_acc / n, "seconds": time.perf_counter() - t0}
            )
            print(
                f"step {step:5d}  loss {run_loss / n:.3f}  acc {run_acc / n:.3f}  {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            run_loss = run_acc = 0.0
    model.eval()
    return {"model": model, "history": history, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def class_probabilities(model, images: torch.Tensor, template: str = "a {}") -> torch.Tensor:
    """Zero-shot probabilities [N, len(SHAPES)] of images [N,3,H,W] 0..1 (224 px)."""
    import open_clip

    tok = open_clip.tokenize(
        [template.format(s) for s in SHAPES], context_length=TOY_CONFIG["text_cfg"]["context_length"]
    )
    txt = F.normalize(model.encode_text(tok), dim=-1)
    img = F.normalize(model.encode_image(normalise(images)), dim=-1)
    return (model.logit_scale.exp().clamp(max=100) * img @ txt.T).softmax(-1)


@torch.no_grad()
def held_out_accuracy(model, n: int = 240, seed: int = 999) -> float:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(SHAPES)
    probs = torch.cat(
        [class_probabilities(model, draw_batch(labels[i : i + 60].tolist(), g)) for i in range(0, n, 60)]
    )  # n: a multiple of len(SHAPES) keeps the classes even
    return float((probs.argmax(1) == labels).float().mean())


def save(model, folder, name: str) -> Dict[str, str]:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path, w_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    cfg_path.write_text(json.dumps(TOY_CONFIG, indent=2))
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(w_path))
    return {"config": str(cfg_path), "weights": str(w_path)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--name", default="toy-shapes")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    out = train(args.steps, args.seed, args.batch, threads=args.threads)
    acc = held_out_accuracy(out["model"])
    files = save(out["model"], args.out_dir, args.name)
    info = {
        "name": args.name,
        "steps": args.steps,
        "seed": args.seed,
        "batch": args.batch,
        "held_out_accuracy": acc,
        "train_seconds": out["seconds"],
        "history": out["history"],
        **files,
    }
    Path(args.out_dir, f"{args.name}.train.json").write_text(json.dumps(info, indent=1))
    print(
        f"held-out accuracy {acc:.3f} ({len(SHAPES)} shapes, chance {1 / len(SHAPES):.3f}); "
        f"trained in {out['seconds']:.0f} s; wrote {files['weights']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
