"""Does reduced precision change the CLIPasso loss gradient? bf16 and fp16 against fp32, RN101.

    python bench/studies/precision.py                  # 4 pictures, 2 augmented views, ~5 min on 2 busy cores
    python bench/studies/precision.py --pictures 6 --augs 4
    python bench/studies/precision.py --table-only     # reprint the last saved table

Why: `mixed_precision="auto"` picks the autocast dtype of the encoder on CUDA (`clipasso.device.amp_dtype`). This script measures how far the gradient the optimiser follows moves when
the RN101 runs in bf16 or fp16, so the default can be the cheaper dtype that still keeps the
gradient's direction (cosine >= 0.995 with fp32 on every picture).

How, without a GPU or pretrained weights:

- Encoder: open_clip ``RN101`` with random weights (``pretrained=None``). A random ResNet with the
  default BatchNorm statistics maps every picture to nearly the same features (the loss is ~0 and
  says nothing), so first every BatchNorm gets a random non-trivial scale (0.5..1.5) and shift
  (0.1 N(0,1)), as clipasso/testing/tiny_models.py does (the last BN of each residual branch is scaled
  down by ``--branch-scale``, see `build_rn101`), and then its running statistics are calibrated on
  real photos (skimage.data, resized to 224, CLIP-normalised, with their mirror images): BN in
  train mode with momentum=None (a cumulative average) over a few forward passes, then eval. The
  script prints how different the pictures' embeddings are after that (mean pairwise cosine).
- Loss: `clipasso.objective.losses.CLIPassoLoss` exactly as `clipasso.objective.Objective.build` builds it (RN101
  layer2 + layer3 + 0.1 semantic), with ``amp_dtype`` None / torch.bfloat16 / torch.float16, i.e.
  what `clipasso.device.amp_dtype` returns on CUDA for "fp32" / "bf16" / "fp16". The training loss is taken over
  1 clean + ``--augs`` augmented views with the same augmentation parameters for every dtype.
- Precision on CPU: ``torch.autocast("cpu", dtype=...)`` for both bf16 and fp16 (CPU autocast
  supports float16 in this torch; convolutions and matmuls run in the low dtype through oneDNN,
  as cuDNN does on a GPU under CUDA autocast). The fp16 backward is scaled by 2**16 and the
  gradient unscaled, as `torch.amp.GradScaler` (which the optimiser uses for fp16 on CUDA) starts;
  the scale is halved when the gradient overflows. Numerics of oneDNN kernels are close to but
  not bit-identical with cuDNN's, so this is an estimate of the GPU behaviour.
- Sketches: two per picture, as a batch of two candidates: "init" is CLIPasso's initial sketch
  (16 strokes from `clipasso.place.init.initialize_strokes` on the picture's XDoG ink, rendered with
  `clipasso.render.raster.rasterize`), "lines" is the XDoG line image blurred by a Gaussian of 1 px (a sketch
  that already looks like the target). The gradient is taken with respect to the sketch image
  and, for "init", also with respect to the stroke control points (through the fp32 rasteriser).

Reported per picture and sketch: the fp32 training loss, the relative difference of the bf16 /
fp16 loss from it (training and clean eval loss), and the cosine of the bf16 / fp16 gradients with
the fp32 gradient. Writes bench/results/precision_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.rn101 import PICTURES, build_rn101, picture  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results", "precision_cpu.json")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
THRESHOLD = 0.995
FP16_SCALE = 2.0**16  # torch.amp.GradScaler's initial scale


def sketches(target: torch.Tensor, seed: int):
    """(points [1,16,4,2] requiring grad, widths, colours, 'lines' image [1,3,H,W]) for one picture."""
    from clipasso.place.init import initialize_strokes
    from clipasso.prepare.xdog import xdog_edges

    ink = xdog_edges(target).float()  # 1 = ink
    st = initialize_strokes(tuple(target.shape[-2:]), 16, [seed], edges=ink)
    k = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * k**2)
    k = k / k.sum()
    blurred = F.conv2d(ink[None, None], k.view(1, 1, 1, -1), padding=(0, 3))
    blurred = F.conv2d(blurred, k.view(1, 1, -1, 1), padding=(3, 0))
    lines = (1 - blurred.clamp(0, 1)).expand(1, 3, -1, -1).contiguous()
    return st.points.clone().requires_grad_(True), st.widths, st.colors, lines


def gradients(encoder, target, points, widths, colors, lines, dtype, augs: int, seed: int):
    """Training loss, eval loss, image gradients [2,3,H,W] and point gradient of the two sketches."""
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.render.raster import rasterize

    loss_fn = CLIPassoLoss(encoder, target, num_augs=augs, amp_dtype=dtype)
    scale = FP16_SCALE if dtype == torch.float16 else 1.0
    while True:
        if points.grad is not None:
            points.grad = None
        init = rasterize(points, widths, colors, target.shape[-2], target.shape[-1])[0]
        init.retain_grad()
        line = lines.clone().requires_grad_(True)
        batch = torch.cat([init, line])
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)]  # same views
        train = loss_fn.train_loss(batch, gens)["total"]
        (train.sum() * scale).backward()
        g_img = torch.cat([init.grad, line.grad]) / scale
        g_pts = points.grad / scale
        if bool(torch.isfinite(g_img).all()) and bool(torch.isfinite(g_pts).all()) or scale <= 1.0:
            break
        scale /= 2  # overflow: back off like GradScaler
    with torch.no_grad():
        ev = loss_fn.eval_loss(batch.detach())["total"]
    return dict(train=train.detach(), eval=ev, img=g_img.detach(), pts=g_pts.detach(), scale=scale)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a @ b) / (a.norm() * b.norm()).clamp(min=1e-300))


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    names = PICTURES[: args.pictures]
    calib = [picture(n) for n in PICTURES[: max(args.pictures, args.calibration)]]
    t0 = time.perf_counter()
    enc = build_rn101(calib, seed=args.seed, branch_scale=args.branch_scale)
    with torch.no_grad():
        x = enc.normalize(torch.stack(calib))
        emb = F.normalize(enc.visual(x).float(), dim=-1)
    sim = emb @ emb.T
    off = sim[~torch.eye(len(calib), dtype=torch.bool)]
    print(
        f"RN101 built and calibrated in {time.perf_counter() - t0:.0f}s; pairwise embedding cosine of the "
        f"{len(calib)} photos: mean {float(off.mean()):.3f}, max {float(off.max()):.3f}",
        flush=True,
    )
    rows = []
    for i, name in enumerate(names):
        target = picture(name)
        points, widths, colors, lines = sketches(target, seed=args.seed + 1000 * i)
        res = {}
        for key, dt in DTYPES.items():
            t = time.perf_counter()
            res[key] = gradients(enc, target, points, widths, colors, lines, dt, args.augs, args.seed + i)
            res[key]["seconds"] = time.perf_counter() - t
        ref = res["fp32"]
        for j, kind in enumerate(("init", "lines")):
            row = dict(picture=name, sketch=kind, loss_fp32=float(ref["train"][j]), eval_fp32=float(ref["eval"][j]))
            for key in ("bf16", "fp16"):
                r = res[key]
                row[f"rel_loss_{key}"] = abs(float(r["train"][j]) / float(ref["train"][j]) - 1)
                row[f"rel_eval_{key}"] = abs(float(r["eval"][j]) / float(ref["eval"][j]) - 1)
                row[f"cos_img_{key}"] = cosine(r["img"][j], ref["img"][j])
                row[f"cos_pts_{key}"] = cosine(r["pts"][0], ref["pts"][0]) if kind == "init" else None
                row["fp16_scale"] = res["fp16"]["scale"]
            rows.append(row)
        secs = {k: round(v["seconds"], 1) for k, v in res.items()}
        print(f"  {name}: done ({secs} s per dtype)", flush=True)
    summary = {}
    for key in ("bf16", "fp16"):
        cos = [r[f"cos_img_{key}"] for r in rows] + [
            r[f"cos_pts_{key}"] for r in rows if r[f"cos_pts_{key}"] is not None
        ]
        summary[key] = dict(
            min_cosine=min(cos),
            mean_cosine=sum(cos) / len(cos),
            max_rel_loss=max(r[f"rel_loss_{key}"] for r in rows),
            max_rel_eval=max(r[f"rel_eval_{key}"] for r in rows),
            keeps_threshold=min(cos) >= THRESHOLD,
        )
    if summary["bf16"]["keeps_threshold"]:
        choice = "bf16"
    elif summary["fp16"]["keeps_threshold"]:
        choice = "fp16"
    else:
        choice = "fp32"
    import platform

    return dict(
        settings=dict(
            pictures=list(names),
            calibration_pictures=list(PICTURES[: max(args.pictures, args.calibration)]),
            augs=args.augs,
            seed=args.seed,
            branch_scale=args.branch_scale,
            threads=args.threads,
            threshold=THRESHOLD,
            torch=torch.__version__,
            cpu=platform.processor() or platform.machine(),
        ),
        emulation=(
            "CPU: torch.autocast('cpu', dtype=torch.bfloat16 / torch.float16) around the RN101 forward "
            "(CLIPassoLoss amp_dtype); fp16 backward scaled by 2**16 and unscaled (GradScaler's start)"
        ),
        embedding_cosine=dict(mean=float(off.mean()), max=float(off.max())),
        rows=rows,
        summary=summary,
        suggested_cuda_auto=choice,
    )


def table(data: dict) -> str:
    out = [
        f"RN101 (random, BN calibrated, branch scale {data['settings'].get('branch_scale')}), "
        f"{data['settings']['augs']} augmented views + clean; "
        f"cosine with the fp32 gradient (image; control points for 'init')",
        f"{'picture':22s} {'sketch':6s} {'loss fp32':>10s} {'rel bf16':>9s} {'rel fp16':>9s} "
        f"{'cos bf16':>9s} {'cos fp16':>9s} {'pts bf16':>9s} {'pts fp16':>9s}",
    ]
    for r in data["rows"]:
        pts = [f"{r[f'cos_pts_{k}']:9.5f}" if r[f"cos_pts_{k}"] is not None else f"{'-':>9s}" for k in ("bf16", "fp16")]
        out.append(
            f"{r['picture']:22s} {r['sketch']:6s} {r['loss_fp32']:10.4g} {r['rel_loss_bf16']:9.2e} "
            f"{r['rel_loss_fp16']:9.2e} {r['cos_img_bf16']:9.5f} {r['cos_img_fp16']:9.5f} {pts[0]} {pts[1]}"
        )
    for k, s in data["summary"].items():
        out.append(
            f"{k}: min cosine {s['min_cosine']:.5f}, mean {s['mean_cosine']:.5f}, max relative loss "
            f"difference {s['max_rel_loss']:.2e} (eval {s['max_rel_eval']:.2e}); "
            f"{'keeps' if s['keeps_threshold'] else 'FAILS'} cosine >= {data['settings']['threshold']}"
        )
    out.append(f"suggested CUDA default for mixed_precision='auto': {data['suggested_cuda_auto']}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pictures", type=int, default=4, help=f"how many photos (1..{len(PICTURES)})")
    p.add_argument("--calibration", type=int, default=6, help="photos used for the BatchNorm statistics")
    p.add_argument("--augs", type=int, default=2, help="augmented views besides the clean one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--branch-scale",
        type=float,
        default=0.2,
        help="scale of the residual branches' last BatchNorm (1.0: features and loss ~1e4)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--table-only", action="store_true", help="reprint the table of the last saved run")
    args = p.parse_args(argv)
    if args.table_only:
        with open(args.out) as f:
            print(table(json.load(f)))
        return 0
    if not 1 <= args.pictures <= len(PICTURES):
        p.error(f"--pictures must be 1..{len(PICTURES)}")
    data = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=2)
    print(table(data))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
