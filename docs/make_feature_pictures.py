"""Make docs/styled_strokes.png and docs/hires.png (styled strokes, pen, vector output at any size).

    python docs/make_feature_pictures.py [--iterations 300] [--strokes 32] [--loss trace]

The sketches are optimised with the weights-free ``trace`` loss (clipasso.objective.losses.TraceLoss) on the
bundled example, because no pretrained CLIP weights can be downloaded where this project is built
and a randomly initialised CLIP draws nothing meaningful. With real weights, pass ``--loss clip
--models-dir DIR``: the same styled-stroke settings apply to the CLIP loss unchanged. Text guidance
needs a trained text tower, so it is not pictured here.

styled_strokes.png: the picture | black strokes (CLIPasso's pen) | colours from the picture with
width and opacity optimised | the same strokes through a 1.2 px pen.
hires.png: one sketch at 224 px upscaled 4x as pixels | the same strokes rendered at 896 px
(vector: points and widths scale, nothing blurs).
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _label(img, text):
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    w = d.textlength(text)
    d.rectangle([4, 4, 12 + w, 20], fill=(255, 255, 255))
    d.text((8, 6), text, fill=(0, 0, 0))
    return img


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--strokes", type=int, default=24)
    ap.add_argument("--matting", action="store_true", help="cut the object out first (u2netp)")
    ap.add_argument("--max-width", type=float, default=3.0, help="largest half-width the optimiser may reach")
    ap.add_argument("--loss", default="trace", choices=["trace", "clip", "clip+trace"])
    ap.add_argument("--models-dir", default=None, help="folder with CLIP weights (for --loss clip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "docs"))
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    from clipasso.prepare.images import to_pil
    from clipasso.place.init import initialize_strokes
    from clipasso.optimize import OptimizeConfig, optimize
    from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target
    from clipasso.render.raster import render
    from clipasso.optimize.style import with_pen
    from clipasso.prepare.xdog import xdog_edges

    torch.manual_seed(args.seed)
    weights = os.path.join(ROOT, "..", "shared", "weights")
    os.environ.setdefault("U2NET_HOME", weights)
    # Without matting by default: the cut-out's ragged outline is the strongest line of the example
    # and would draw most strokes to it. For the same reason the photo is cropped to a square (a
    # photo padded with white has its border as the strongest line).
    photo = Image.open(EXAMPLE_IMAGE).convert("RGB")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    photo = photo.crop((left, top, left + side, top + side))
    target, mask = prepare_target(photo, canvas=224, background_removal=args.matting, allow_download=False)
    start = initialize_strokes(
        (224, 224), args.strokes, [args.seed], saliency=mask, edges=xdog_edges(target), mask=mask
    )
    encoder = None
    if args.loss != "trace":
        from clipasso.models import load_clip

        encoder = load_clip("RN101", models_dir=args.models_dir, allow_download=False)
    base = dict(iterations=args.iterations, loss=args.loss, eval_interval=10, num_augs=2)
    plain = optimize(start, target, encoder, OptimizeConfig(**base)).strokes
    styled = optimize(
        start,
        target,
        encoder,
        OptimizeConfig(
            color_from_image=True, optimize_width=True, optimize_opacity=True, width_range=(0.5, args.max_width), **base
        ),
    ).strokes

    scale = 2  # sketches are re-rendered at 2x (vector), the picture is resized
    side = 224 * scale
    tiles = [_label(to_pil(target).resize((side, side), Image.LANCZOS), "picture")]
    for s, text in (
        (plain, "CLIPasso pen (3 px black)"),
        (styled, "colour from image, width + opacity optimised"),
        (with_pen(styled, 1.2), "same strokes, 1.2 px pen"),
    ):
        tiles.append(_label(to_pil(render(s, size=(side, side)).image[0]), text))
    sheet = Image.new("RGB", (side * len(tiles) + 8 * (len(tiles) - 1), side), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, (i * (side + 8), 0))
    out1 = os.path.join(args.out_dir, "styled_strokes.png")
    sheet.save(out1)

    # hi-res: pixels upscaled vs vector re-rendered, a crop of the middle at 4x
    f = 4
    small = to_pil(render(styled).image[0]).resize((224 * f, 224 * f), Image.BILINEAR)
    big = to_pil(render(styled, size=(224 * f, 224 * f)).image[0])
    box = (224 * f // 4, 224 * f // 4, 224 * f // 4 + 448, 224 * f // 4 + 448)
    hires = Image.new("RGB", (448 * 2 + 8, 448), "white")
    hires.paste(_label(small.crop(box), "224 px render, upscaled 4x"), (0, 0))
    hires.paste(_label(big.crop(box), "rendered at 896 px (vector)"), (456, 0))
    out2 = os.path.join(args.out_dir, "hires.png")
    hires.save(out2)
    print(f"wrote {out1} and {out2}")


if __name__ == "__main__":
    main()
