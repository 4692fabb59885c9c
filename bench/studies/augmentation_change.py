"""How much the augmentation change of issue 12 moved the loss: the old augmentation (one grid_sample,
align_corners=True; clipasso/losses.py at commit 0294d69, read from git) against the new one
(torchvision's perspective then resized crop, as the original CLIPasso): view differences, the loss
ratio on augmented views, gradient cosines; with --timing the cost of both.

    python bench/studies/augmentation_change.py [--rn101] [--n 16] [--timing]

Needs the git history (a clone, not an sdist). Figures are in the README's parity section.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
OLD_COMMIT = "0294d69"
import clipasso.objective.losses as new  # noqa: E402 - from this checkout (sys.path above)

_old_src = subprocess.run(
    ["git", "-C", ROOT, "show", f"{OLD_COMMIT}:clipasso/losses.py"], check=True, capture_output=True, text=True
).stdout
_old_path = os.path.join(tempfile.mkdtemp(), "losses_old.py")
with open(_old_path, "w") as f:
    f.write(_old_src)
spec = importlib.util.spec_from_file_location("clipasso.losses_old", _old_path)
old = importlib.util.module_from_spec(spec)
sys.modules["clipasso.losses_old"] = old
spec.loader.exec_module(old)
from clipasso.prepare.xdog import xdog_edges  # noqa: E402
from clipasso.render.raster import rasterize  # noqa: E402
from clipasso.place.init import initialize_strokes  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--rn101", action="store_true")
ap.add_argument("--n", type=int, default=24)
ap.add_argument("--timing", action="store_true")
args = ap.parse_args()
torch.set_num_threads(2)


def photo(name):
    import skimage.data as d

    a = torch.from_numpy(getattr(d, name)().copy()).permute(2, 0, 1).float()[None] / 255
    s = min(a.shape[-2:])
    top, left = (a.shape[-2] - s) // 2, (a.shape[-1] - s) // 2
    return F.interpolate(
        a[..., top : top + s, left : left + s], size=(224, 224), mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)[0]


target = photo("chelsea")
lines = 1 - xdog_edges(target)  # a line drawing of the target (a "good" sketch)
line_sketch = (1 - (1 - lines)).expand(3, -1, -1).clone() if lines.ndim == 2 else lines
init = initialize_strokes((224, 224), 16, [0], edges=xdog_edges(target))
pts0 = init.points[0].clone()


def render_pts(p):
    return rasterize(p[None], init.widths[:1], init.colors[:1], 224, 224, (1.0, 1.0, 1.0))[0]


def encoders():
    from clipasso.testing.tiny_models import write_tiny_models, TINY_RN, perturb_norms
    from clipasso.models import load_clip, wrap_model
    import tempfile

    out = {"tiny": load_clip(TINY_RN, models_dir=write_tiny_models(tempfile.mkdtemp())["folder"], allow_download=False)}
    if args.rn101:
        import open_clip

        torch.manual_seed(0)
        m = open_clip.create_model("RN101", pretrained=None)
        perturb_norms(m, 0)  # random BN scales (open_clip zero-inits some)
        bns = [x for x in m.visual.modules() if isinstance(x, torch.nn.BatchNorm2d)]
        for b in bns:
            b.reset_running_stats()
            b.momentum = None
        names = [
            "astronaut",
            "chelsea",
            "coffee",
            "rocket",
            "cat",
            "immunohistochemistry",
            "hubble_deep_field",
            "motorcycle_left",
        ]
        imgs = []
        for n in names:
            try:
                imgs.append(photo(n))
            except Exception as e:
                print("skip", n, e)
        x = torch.stack(imgs)
        x = torch.cat([x, x.flip(-1)])
        mean = torch.tensor(new.__dict__.get("OPENAI_MEAN", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
        std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
        m.visual.train()
        with torch.no_grad():
            m.visual((x - mean) / std)
        m.visual.eval()
        for b in bns:
            b.momentum = 0.1
        out["rn101"] = wrap_model(m, name="RN101", source=f"random, BN calibrated on {len(x)} photos")
    return out


def cos(a, b):
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


if args.timing:
    # 3 candidates x 4 augmented views (+1 clean each = 5 views x 3) at 224, CPU, 2 threads
    b, a = 3, 4
    sk = torch.rand(b, 3, 224, 224).requires_grad_()
    tg = target[None]
    for mod, name in ((old, "old"), (new, "new")):

        def step(pool=None, mod=mod, name=name):
            gens = [torch.Generator().manual_seed(i) for i in range(b)]
            if pool is None:
                params = mod.AugmentParams.cat([mod.sample_augment_params(a, (224, 224), g) for g in gens])
                grid = mod.augment_grid(params, device="cpu")
                if name == "old":
                    grid = grid.float()
                with torch.no_grad():  # the target's views are part of the cost
                    mod.apply_augment(tg.expand(b * a, -1, -1, -1), params, grid)
            else:
                picks = torch.stack([torch.randperm(16, generator=g)[:2] for g in gens]).reshape(-1)
                grid = pool.index(picks) if name == "new" else pool[picks]
            x = mod.apply_augment(sk.repeat_interleave(grid.__len__() // b, 0), None, grid)
            x.backward(torch.ones_like(x))

        def tmin(f, r=12):
            for _ in range(2):
                f()
            ts = []
            for _ in range(r):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            ts.sort()
            return ts[0], ts[len(ts) // 2]

        tp, tpm = tmin(step)
        p16 = mod.sample_augment_params(16, (224, 224), torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        pool = mod.augment_grid(p16, device="cpu")
        tbuild = time.perf_counter() - t0
        if name == "old":
            pool = pool.float()
        tq, tqm = tmin(lambda pool=pool: step(pool))
        print(
            f"{name}: paper mode (draw + grids + target views + sketch views fwd+bwd, 12 aug views): min {tp * 1e3:.1f} / median {tpm * 1e3:.1f} ms;"
            f" fast mode (pool of 16, 2 views x 3 cand fwd+bwd): min {tq * 1e3:.1f} / median {tqm * 1e3:.1f} ms; pool grids built once: {tbuild * 1e3:.1f} ms"
        )
    enc = encoders()["rn101" if args.rn101 else "tiny"]
    L = new.CLIPassoLoss(enc, target, num_augs=4)
    gens = [torch.Generator().manual_seed(i) for i in range(b)]
    L.train_loss(sk, gens)["total"].sum().backward()
    t0 = time.perf_counter()
    for _ in range(2):
        L.train_loss(sk, gens)["total"].sum().backward()
    print(
        f"whole train_loss fwd+bwd ({enc.name}, 3 cand x 5 views, paper mode): {(time.perf_counter() - t0) / 2 * 1e3:.0f} ms"
    )
    sys.exit()

for ename, enc in encoders().items():
    params = new.sample_augment_params(args.n, (224, 224), torch.Generator().manual_seed(1234))
    res = {}
    for sname, sk in (("line drawing", line_sketch), ("16 initial strokes", render_pts(pts0)[0].detach())):
        vo_s = old.apply_augment(sk.expand(args.n, -1, -1, -1), params)
        vn_s = new.apply_augment(sk.expand(args.n, -1, -1, -1), params)
        vo_t = old.apply_augment(target.expand(args.n, -1, -1, -1), params)
        vn_t = new.apply_augment(target.expand(args.n, -1, -1, -1), params)
        L = new.CLIPassoLoss(enc, target, num_augs=0)
        with torch.no_grad():
            lo = L._terms(L._features(vo_s), L._features(vo_t), args.n)["total"]
            ln = L._terms(L._features(vn_s), L._features(vn_t), args.n)["total"]
        # gradients of the training loss (1 clean + 4 aug, per generator) wrt the image and the control points
        gi, gp, tr = [], [], []
        for seed in range(6):
            outs = []
            for mod in (old, new):
                LL = mod.CLIPassoLoss(enc, target, num_augs=4)
                if sname == "line drawing":
                    x = sk[None].clone().requires_grad_()
                    v = LL.train_loss(x, [torch.Generator().manual_seed(seed)])["total"]
                    v.sum().backward()
                    outs.append((float(v.detach()), x.grad.clone(), None))
                else:
                    p = pts0.clone().requires_grad_()
                    x = render_pts(p)
                    x.retain_grad()
                    v = LL.train_loss(x, [torch.Generator().manual_seed(seed)])["total"]
                    v.sum().backward()
                    outs.append((float(v.detach()), x.grad.clone(), p.grad.clone()))
            gi.append(cos(outs[0][1], outs[1][1]))
            tr.append(outs[0][0] / outs[1][0])
            if outs[0][2] is not None:
                gp.append(cos(outs[0][2], outs[1][2]))
        print(
            f"[{ename}] sketch={sname}: views mean|old-new| sketch {float((vo_s - vn_s).abs().mean()):.4f}"
            f" target {float((vo_t - vn_t).abs().mean()):.4f} (max {float((vo_t - vn_t).abs().max()):.3f});"
            f" aug-view loss old/new mean {float(lo.mean() / ln.mean()):.3f} (per view {float((lo / ln).min()):.3f}..{float((lo / ln).max()):.3f});"
            f" train loss (1 clean + 4 aug) old/new {np.mean(tr):.3f}; grad cos image {np.mean(gi):.4f} (min {np.min(gi):.4f})"
            + (f"; grad cos points {np.mean(gp):.4f} (min {np.min(gp):.4f})" if gp else "")
        )
