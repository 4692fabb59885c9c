"""The straightforward way the original CLIPasso code optimises, as a timing baseline for bench/speed.py.

Not part of the engine and not used by it. It follows the released code's structure
(../shared/reference/clipasso-spec.md, sections 4, 5 and 8), so that the engine's speed-up is a
ratio measured side by side on the same machine, renderer and encoder:

- seeds run one after another, each with its own Adam on its own points;
- the CLIP model keeps ``requires_grad`` on its parameters (the original never froze them), so every
  forward builds a graph and every backward also computes (and accumulates) weight gradients;
- each iteration the target goes through the encoder again: 1 clean + 4 freshly augmented views,
  the input detached but the graph still built because the weights require grad;
- each augmented view is one torchvision ``Compose`` call on the stacked (sketch, target) pair
  (RandomPerspective(0.5, fill=0) + RandomResizedCrop(224, scale 0.8, ratio 1) + Normalize), then the
  sketch views and the target views each go through the encoder in one call of 5 images;
- the ResNet forward computes every stage (stem, layer1..4) and the attention pool; the loss is
  MSE of layer2 and layer3 plus 0.1 x (1 - cos) of the embeddings;
- every 10 iterations an eval loss on the clean pair (sketch and target through the encoder again,
  under no_grad);
- on CUDA the Conv/Linear weights are fp16, as the vendored CLIP converts them.

What it does NOT copy: diffvg (the engine's own rasteriser draws the strokes for both, so the
ratio is the optimiser's alone), the per-seed process start and model loading, and the JPG/SVG
files written every 10 iterations.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from typing import Dict, List

import torch

if __package__ in (None, ""):  # run as a script: python bench/original_baseline.py --check
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.harness import markdown_table, sync as _sync  # noqa: E402

ORIGINAL_LAYER_WEIGHTS = (0.0, 0.0, 1.0, 1.0, 0.0)  # stem, layer1, layer2, layer3, layer4
ORIGINAL_FC_WEIGHT = 0.1
ORIGINAL_NUM_AUGS = 4
ORIGINAL_EVAL_INTERVAL = 10


def trainable_copy(encoder) -> torch.nn.Module:
    """A copy of a `ClipEncoder`'s open_clip model with every parameter requiring grad, in eval mode
    (clip.load returns an eval-mode model whose parameters require grad)."""
    model = copy.deepcopy(encoder.model).eval()
    model.requires_grad_(True)
    model.visual.to(memory_format=torch.contiguous_format)  # the original used the default layout
    if encoder.device.type == "cuda":
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, torch.float16)
    return model


class OriginalConvLoss:
    """CLIPConvLoss as the released code computes it (RN encoders only)."""

    def __init__(
        self,
        model: torch.nn.Module,
        mean,
        std,
        canvas: int = 224,
        num_augs: int = ORIGINAL_NUM_AUGS,
        layer_weights=ORIGINAL_LAYER_WEIGHTS,
        fc_weight: float = ORIGINAL_FC_WEIGHT,
    ):
        from torchvision import transforms

        if not hasattr(model.visual, "layer1"):
            raise ValueError("the original-style baseline reads ResNet stages; give a CLIP ResNet (RN50, RN101, ...)")
        self.model = model
        self.visual = model.visual
        self.layer_weights = tuple(layer_weights)
        self.fc_weight = float(fc_weight)
        self.num_augs = int(num_augs)
        self.normalize = transforms.Normalize(mean, std)
        self.augment = transforms.Compose(
            [
                transforms.RandomPerspective(fill=0, p=1.0, distortion_scale=0.5),
                transforms.RandomResizedCrop(canvas, scale=(0.8, 0.8), ratio=(1.0, 1.0)),
                self.normalize,
            ]
        )

    def features(self, x: torch.Tensor):
        v = self.visual
        x = x.type(v.conv1.weight.dtype)
        x = v.stem(x)
        f1 = v.layer1(x)
        f2 = v.layer2(f1)
        f3 = v.layer3(f2)
        f4 = v.layer4(f3)
        return v.attnpool(f4), [x, f1, f2, f3, f4]

    def __call__(self, sketch: torch.Tensor, target: torch.Tensor, mode: str = "train") -> Dict[str, torch.Tensor]:
        """sketch, target: [1,3,H,W] in 0..1. Returns the loss terms; their sum is the training loss."""
        xs, ys = [self.normalize(sketch)], [self.normalize(target)]
        if mode == "train":
            for _ in range(self.num_augs):
                pair = self.augment(torch.cat([sketch, target]))
                xs.append(pair[0:1])
                ys.append(pair[1:2])
        xs, ys = torch.cat(xs), torch.cat(ys)
        x_fc, x_conv = self.features(xs)
        y_fc, y_conv = self.features(ys.detach())
        out = {}
        for i, w in enumerate(self.layer_weights):
            if w:
                out[f"clip_conv_loss_layer{i}"] = w * (x_conv[i] - y_conv[i]).float().square().mean()
        out["fc"] = self.fc_weight * (1 - torch.cosine_similarity(x_fc.float(), y_fc.float(), dim=1)).mean()
        return out


def run_seed(
    points: torch.Tensor,
    widths: torch.Tensor,
    colors: torch.Tensor,
    target: torch.Tensor,
    loss_fn: OriginalConvLoss,
    iterations: int,
    seed: int,
    device,
    lr: float = 1.0,
    eval_interval: int = ORIGINAL_EVAL_INTERVAL,
    canvas=(224, 224),
) -> Dict:
    """One seed's optimisation, the original way. points [1,S,P,2]. Returns per-step times and losses."""
    from clipasso.render.raster import rasterize

    device = torch.device(device)
    torch.manual_seed(seed)  # the original seeds torch (and numpy, random) per run
    pts = points.detach().to(device).clone().requires_grad_(True)
    widths, colors = widths.to(device), colors.to(device)
    target = target.to(device)
    opt = torch.optim.Adam([pts], lr=lr)  # only the points are stepped; the weights just accumulate grads
    steps: List[float] = []
    eval_times: List[float] = []
    losses: List[float] = []
    best = float("inf")

    def sync():
        _sync(device)

    for it in range(iterations):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad()
        image = rasterize(pts, widths, colors, canvas[0], canvas[1])[0]
        terms = loss_fn(image, target, "train")
        loss = sum(terms.values())
        loss.backward()
        opt.step()
        sync()
        t1 = time.perf_counter()
        if it % eval_interval == 0:
            with torch.no_grad():
                ev = float(sum(loss_fn(image.detach(), target, "eval").values()))
            best = min(best, ev)
            sync()
            eval_times.append(time.perf_counter() - t1)
        steps.append(t1 - t0)
        losses.append(float(loss.detach()))
    return dict(steps=steps, eval_times=eval_times, losses=losses, best_eval=best)


def run_sequential(
    strokes,
    target: torch.Tensor,
    model: torch.nn.Module,
    mean,
    std,
    iterations: int,
    device,
    num_augs: int = ORIGINAL_NUM_AUGS,
) -> Dict:
    """Every candidate of ``strokes`` optimised one after another (the original's best-of-N).

    model: a `trainable_copy` of the encoder's open_clip model; mean/std: its normalisation.
    Returns per-seed results plus ``per_iteration`` = the sum over seeds of each seed's median
    steady step (the first step of each seed is warm-up) and ``eval_s`` = summed eval cost.
    """
    device = torch.device(device)
    h, w = strokes.canvas
    loss_fn = OriginalConvLoss(model, mean, std, canvas=h, num_augs=num_augs)
    tgt = target.detach().float()
    tgt = tgt.unsqueeze(0) if tgt.ndim == 3 else tgt
    seeds = strokes.seeds or tuple(range(strokes.num_candidates))
    runs = []
    for b in range(strokes.num_candidates):
        runs.append(
            run_seed(
                strokes.points[b : b + 1],
                strokes.widths[b : b + 1],
                strokes.colors[b : b + 1],
                tgt,
                loss_fn,
                iterations,
                int(seeds[b]),
                device,
                canvas=(h, w),
            )
        )

    def steady(steps):
        return steps[1:] if len(steps) > 1 else steps

    per_it = sum(statistics.median(steady(r["steps"])) for r in runs)
    fastest = sum(min(steady(r["steps"])) for r in runs)
    eval_s = sum(statistics.median(r["eval_times"]) for r in runs if r["eval_times"])
    return dict(runs=runs, per_iteration=per_it, fastest=fastest, eval_s=eval_s)


def check(iterations: int = 2) -> List[tuple]:
    """Is the baseline a fair comparison? On the tiny random test ResNet: its clean-view loss equals the
    engine's eval loss, its weights really take gradients (as the original's did) while the engine's copy
    stays frozen, and a sequential run times every seed. Returns (what, measured, ok) rows."""
    import tempfile

    from clipasso.models import load_clip
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.render.raster import render
    from clipasso.place.init import initialize_strokes
    from clipasso.testing.tiny_models import TINY_RN, write_tiny_models

    encoder = load_clip(
        TINY_RN,
        models_dir=write_tiny_models(tempfile.mkdtemp(prefix="clipasso_baseline_"))["folder"],
        allow_download=False,
    )
    target = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(3))
    strokes = initialize_strokes((224, 224), 8, [0, 1000])
    sketch = render(strokes).image
    model = trainable_copy(encoder)
    base = OriginalConvLoss(model, encoder.mean, encoder.std)
    engine = CLIPassoLoss(encoder, target, num_augs=0)
    with torch.no_grad():
        want = engine.eval_loss(sketch)["total"]
        got = torch.stack([sum(base(sketch[i : i + 1], target[None], "eval").values()) for i in range(2)])
    rel = float(((got - want).abs() / want.abs().clamp_min(1e-12)).max())
    x = sketch[:1].clone().requires_grad_(True)
    sum(base(x, target[None], "train").values()).backward()
    image_grad = x.grad is not None and float(x.grad.abs().sum()) > 0
    weight_grad = any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.visual.parameters())
    frozen = not any(p.requires_grad for p in encoder.model.parameters())
    out = run_sequential(strokes, target, model, encoder.mean, encoder.std, iterations=iterations, device="cpu")
    timed_all = len(out["runs"]) == 2 and all(len(r["steps"]) == iterations for r in out["runs"])
    return [
        (
            "clean-view loss vs the engine's eval loss (max relative difference)",
            f"{rel:.1e}",
            bool(torch.allclose(got, want, rtol=1e-4, atol=1e-7)),
        ),
        ("the sketch gets a gradient", image_grad, image_grad),
        ("the encoder's weights get gradients (as the original's)", weight_grad, weight_grad),
        ("the engine's encoder stays frozen", frozen, frozen),
        (
            "a sequential run times every seed and its evaluations",
            f"{out['per_iteration']:.3f} s/it",
            timed_all and out["per_iteration"] > 0 and out["eval_s"] > 0,
        ),
    ]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        description="The original CLIPasso's way of optimising, the timing baseline that "
        "bench/speed.py runs side by side with the engine. --check verifies "
        "on tiny random models that it computes the engine's loss."
    )
    ap.add_argument("--check", action="store_true", help="run the fairness check and exit 0 when it holds")
    ap.add_argument("--iterations", type=int, default=2, help="steps per seed in the check's sequential run")
    args = ap.parse_args(argv)
    if not args.check:
        ap.print_help()
        return 0
    rows = check(args.iterations)
    print(markdown_table(["check", "measured", "ok"], rows, align="llr"))
    bad = [r[0] for r in rows if not r[2]]
    if bad:
        print("original_baseline: NOT a fair baseline: " + "; ".join(bad), file=sys.stderr)
        return 1
    print("original_baseline: fair (same loss as the engine, weights taking gradients)")
    return 0


__all__ = ["OriginalConvLoss", "trainable_copy", "run_seed", "run_sequential", "check"]


if __name__ == "__main__":
    sys.exit(main())
