"""Does text guidance steer a sketch, and how much does text_weight trade against likeness?

    python bench/studies/text_guidance.py                    # trains the toy models first if needed (~20 min on 2 cores)
    python bench/studies/text_guidance.py --picture          # also docs/text_guidance.png
    python bench/studies/text_guidance.py --models DIR --weights 0,0.3,1,3 --prompts square,triangle

No pretrained CLIP exists on the machines this is built on, and a random text tower gives words
no meaning, so this benchmark uses two toy CLIP models trained here (clipasso/testing/toy_clip.py: line
drawings of six shapes, a real open_clip text tower and tokenizer, different seeds):

- the *loss model* drives the sketch (geometric + semantic CLIPasso loss + the text term);
- the *judge* is only used to score the result, so a sketch cannot look right merely because it
  fooled the model it was optimised against.

The picture is a clean drawing of one shape (a circle by default); the sketch is made with the real
pipeline (`clipasso.sketch`, fast preset, starts drawn inside the shape: the RGBA picture's alpha is
the object mask, as background removal gives for a photo) and a prompt naming another shape
("a drawing of a square") at increasing text weights. Per setting: the judge's zero-shot
probability of the prompted shape and of the pictured shape, the loss model's own probability
of the prompted shape, and the edge F-score of the sketch against the picture's outline
(`clipasso.report.metrics`, how much the sketch still traces the picture). Means over seeds.

What it measures is the mechanism and the shape of the trade-off on a toy vocabulary. The weight
that suits a real RN101 on photographs has to be measured again with real weights (the README
says so); the text term's scale (1 - cos) is the same in both, which is why the numbers are a
guide at all.

Prints a table last and writes bench/results/text_guidance_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clipasso.testing import toy_clip  # noqa: E402

LOSS_MODEL = "toy-shapes"
JUDGE_MODEL = "toy-shapes-judge"
DEFAULT_MODELS_DIR = ROOT / "bench" / ".toy_models"  # git-ignored: trained weights are not committed
TEMPLATE = "a drawing of a {}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_models(folder: Path, steps: int, threads: int, batch: int = 48, held_out: int = 240) -> dict:
    """Train and save the two toy models unless ``folder`` already has them; returns their training info."""
    info = {}
    for name, seed in ((LOSS_MODEL, 0), (JUDGE_MODEL, 1)):
        meta = folder / f"{name}.train.json"
        if (folder / f"{name}.safetensors").exists() and meta.exists():
            info[name] = json.loads(meta.read_text())
            continue
        log(f"training {name} (seed {seed}, {steps} steps) into {folder} ...")
        out = toy_clip.train(steps=steps, seed=seed, batch=batch, threads=threads)
        acc = toy_clip.held_out_accuracy(out["model"], n=held_out)
        files = toy_clip.save(out["model"], folder, name)
        info[name] = {
            "name": name,
            "steps": steps,
            "seed": seed,
            "batch": batch,
            "held_out_accuracy": acc,
            "train_seconds": out["seconds"],
            "history": out["history"],
            **files,
        }
        meta.write_text(json.dumps(info[name], indent=1))
    return info


def target_image(shape: str):
    """The clean drawing of ``shape`` as RGBA uint8 [224,224,4]: black outline on white, alpha = the
    filled shape (the object mask, as background removal would give for a photo)."""
    import numpy as np
    from PIL import Image, ImageDraw

    g = torch.Generator().manual_seed(0)
    rgb = toy_clip.draw_batch([toy_clip.SHAPES.index(shape)], g, clean=True)[0]
    pts, _, alphas = toy_clip.shape_strokes(shape, torch.Generator().manual_seed(0), clean=True)
    outline = pts[alphas > 0].reshape(-1, 2)
    mask = Image.new("L", (toy_clip.SIZE, toy_clip.SIZE), 0)
    ImageDraw.Draw(mask).polygon([tuple(map(float, p)) for p in outline], fill=255, outline=255, width=5)
    rgba = np.zeros((toy_clip.SIZE, toy_clip.SIZE, 4), np.uint8)
    rgba[..., :3] = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rgba[..., 3] = np.asarray(mask)
    return rgba


def run_setting(target, prompt, weight, args, models_dir, judge, loss_model):
    from clipasso import sketch
    from clipasso.report.metrics import sketch_fidelity
    from clipasso.render.raster import render

    extra = dict(text=TEMPLATE.format(prompt), text_weight=weight) if prompt and weight > 0 else {}
    t0 = time.perf_counter()
    res = sketch(
        target,
        preset="fast",
        strokes=args.strokes,
        seeds=args.seeds,
        iterations=args.iterations,
        clip_model=LOSS_MODEL,
        models_dir=str(models_dir),
        allow_download=False,
        saliency="mask",
        background_removal=False,
        device="cpu",
        seed=args.seed,
        **extra,
    )
    seconds = time.perf_counter() - t0
    renders = render(res.candidates).image  # every seed's final sketch
    target = res.target  # the picture as the pipeline prepared it ([3,224,224] on white)
    probs = toy_clip.class_probabilities(judge, renders, TEMPLATE)
    own = toy_clip.class_probabilities(loss_model, renders, TEMPLATE)
    fid = sketch_fidelity(renders, target)
    shape_i = toy_clip.SHAPES.index(args.shape)
    row = {
        "prompt": prompt or "-",
        "text_weight": weight if prompt else 0.0,
        "judge_p_prompt": float(probs[:, toy_clip.SHAPES.index(prompt)].mean()) if prompt else None,
        "judge_p_picture": float(probs[:, shape_i].mean()),
        "judge_top1": [toy_clip.SHAPES[int(i)] for i in probs.argmax(1)],
        "own_p_prompt": float(own[:, toy_clip.SHAPES.index(prompt)].mean()) if prompt else None,
        "edge_f": sum(fid["f"]) / len(fid["f"]),
        "losses": [float(v) for v in res.candidates.losses],
        "seconds": seconds,
        "s_per_iteration": seconds / max(1, args.iterations),
    }
    return row, res


def table(rows, shape) -> str:
    head = (
        f"{'prompt':10s} {'weight':>6s} {'judge P(prompt)':>15s} {'judge P(' + shape + ')':>17s} "
        f"{'own P(prompt)':>13s} {'edge F':>7s}  judge top-1 per seed"
    )
    lines = [head]
    for r in rows:
        pp = "-" if r["judge_p_prompt"] is None else f"{r['judge_p_prompt']:.3f}"
        op = "-" if r["own_p_prompt"] is None else f"{r['own_p_prompt']:.3f}"
        lines.append(
            f"{r['prompt']:10s} {r['text_weight']:6.2f} {pp:>15s} {r['judge_p_picture']:17.3f} "
            f"{op:>13s} {r['edge_f']:7.3f}  {', '.join(r['judge_top1'])}"
        )
    return "\n".join(lines)


def picture(target, results, prompts, weights, shape, path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from clipasso.prepare.images import to_pil
    from clipasso.render.raster import render

    font = ImageFont.load_default()
    tile, head, left = 168, 30, 96
    cols = len(weights)
    picture_rgb = next(iter(results.values()))[1].target  # as the pipeline prepared it
    sheet = Image.new("RGB", (left + (cols + 1) * tile, head + len(prompts) * (tile + 16)), "white")
    d = ImageDraw.Draw(sheet)
    d.text((left + tile / 2, 6), f"picture ({shape})", fill=(0, 0, 0), font=font, anchor="mt")
    for j, w in enumerate(weights):
        d.text(
            (left + (j + 1.5) * tile, 6),
            f"text_weight {w:g}" if w > 0 else "no prompt",
            fill=(0, 0, 0),
            font=font,
            anchor="mt",
        )
    for i, p in enumerate(prompts):
        y = head + i * (tile + 16)
        d.text((6, y + tile / 2), f'"{TEMPLATE.format(p)}"'.replace(" a ", "\na ", 1), fill=(0, 0, 0), font=font)
        sheet.paste(to_pil(picture_rgb).resize((tile - 8, tile - 8), Image.LANCZOS), (left + 4, y + 4))
        for j, w in enumerate(weights):
            row, res = results[(p if w > 0 else None, w)]
            img = to_pil(render(res.strokes, size=(448, 448)).image[0]).resize((tile - 8, tile - 8), Image.LANCZOS)
            x = left + (j + 1) * tile
            sheet.paste(img, (x + 4, y + 4))
            d.rectangle([x + 4, y + 4, x + tile - 5, y + tile - 5], outline=(200, 200, 200))
            judge_p = row["judge_p_prompt"]
            label = (
                f"judge P({p}) {judge_p:.2f}"
                if judge_p is not None
                else f"judge P({shape}) {row['judge_p_picture']:.2f}"
            )
            d.text((x + tile / 2, y + tile + 1), label, fill=(0, 0, 0), font=font, anchor="mt")
    sheet.save(path, optimize=True)
    log(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models", type=Path, default=DEFAULT_MODELS_DIR, help="folder of the toy models (trained if absent)"
    )
    ap.add_argument("--train-steps", type=int, default=1200)
    ap.add_argument("--train-batch", type=int, default=48)
    ap.add_argument("--held-out", type=int, default=240, help="fresh drawings the toy models' accuracy is measured on")
    ap.add_argument("--shape", default="circle", choices=toy_clip.SHAPES, help="the pictured shape")
    ap.add_argument("--prompts", default="square,triangle,star")
    ap.add_argument("--weights", default="0,0.1,0.3,1,3")
    ap.add_argument("--strokes", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=250)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--picture", action="store_true", help="also write docs/text_guidance.png")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "text_guidance_cpu.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = [p.strip() for p in args.prompts.split(",") if p.strip()]
    bad = [p for p in prompts + [args.shape] if p not in toy_clip.SHAPES]
    if bad:
        ap.error(f"unknown shape(s) {bad}; the toy models know {', '.join(toy_clip.SHAPES)}")
    weights = sorted({float(w) for w in args.weights.split(",")})
    if any(w < 0 for w in weights):
        ap.error("text weights must be >= 0")

    info = ensure_models(args.models, args.train_steps, args.threads, args.train_batch, args.held_out)
    from clipasso.models import load_clip

    loss_model = load_clip(LOSS_MODEL, models_dir=str(args.models), allow_download=False).model
    judge = load_clip(JUDGE_MODEL, models_dir=str(args.models), allow_download=False).model
    target = target_image(args.shape)
    t0 = time.perf_counter()
    results, rows = {}, []
    settings = [(None, 0.0)] if 0.0 in weights else []
    settings += [(p, w) for p in prompts for w in weights if w > 0]
    for p, w in settings:
        log(f"sketching with prompt {p!r}, text_weight {w:g} ...")
        row, res = run_setting(target, p, w, args, args.models, judge, loss_model)
        results[(p, w)] = (row, res)
        rows.append(row)
    print(table(rows, args.shape))
    accs = {k: v.get("held_out_accuracy") for k, v in info.items()}
    print(
        f"toy models: held-out accuracy {accs} on 6 shapes (chance 0.167); {args.strokes} strokes, "
        f"{args.iterations} iterations, {args.seeds} seeds, fast preset; total {time.perf_counter() - t0:.0f} s"
    )
    out = {
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "settings": {
            "shape": args.shape,
            "prompts": prompts,
            "weights": weights,
            "template": TEMPLATE,
            "strokes": args.strokes,
            "iterations": args.iterations,
            "seeds": args.seeds,
            "preset": "fast",
            "saliency": "mask (the filled shape)",
        },
        "toy_models": {
            k: {kk: v.get(kk) for kk in ("steps", "seed", "held_out_accuracy", "train_seconds")}
            for k, v in info.items()
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    log(f"wrote {args.out}")
    if args.picture:
        picture(target, results, prompts, weights, args.shape, ROOT / "docs" / "text_guidance.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
