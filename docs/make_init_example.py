"""Make docs/init_example.png: photo, matting mask, saliency map, sampling map and stroke starts.

    python docs/make_init_example.py [--photo chelsea] [--saliency clip-attention]
                                     [--clip-weights FILE] [--models-dir DIR] [--out docs/init_example.png]

Uses a scikit-image sample photo, rembg's u2netp from ../shared/weights (or U2NET_HOME), and CLIP
ViT-B-32 for the saliency map when its weights can be found. Without them (as on the machines this
project is developed on) it falls back to the matting mask as the saliency map and says so in
the figure, rather than showing the attention of a randomly initialised network.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", default="chelsea", help="scikit-image sample name (chelsea, coffee, astronaut)")
    ap.add_argument("--saliency", default="clip-attention", choices=["clip-attention", "clip-relevancy", "mask"])
    ap.add_argument("--clip-weights", default=None, help="ViT-B-32 checkpoint file")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "..", "shared", "weights"))
    ap.add_argument("--strokes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "init_example.png"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.path import Path as MplPath
    from matplotlib.patches import PathPatch
    from skimage import data

    from clipasso.prepare.images import as_rgb, fit_square
    from clipasso.place.init import initialize_strokes, sampling_map, start_probabilities
    from clipasso.prepare.matting import remove_background
    from clipasso.place.saliency import saliency_map
    from clipasso.prepare.xdog import xdog_edges

    torch.set_num_threads(2)
    photo = as_rgb(getattr(data, args.photo)())
    matted = remove_background(photo, model="u2netp", models_dir=args.models_dir)
    canvas = 224
    image = fit_square(matted.image, canvas)
    mask = fit_square(matted.mask[None], canvas, fill=0.0, mode="bilinear")[0]

    method, note = args.saliency, ""
    encoder = None
    if method != "mask":
        from clipasso.models import WeightsNotFoundError, load_clip

        try:
            encoder = load_clip("ViT-B-32", weights=args.clip_weights, allow_download=False)
        except (WeightsNotFoundError, FileNotFoundError) as exc:
            logging.warning(
                "no CLIP ViT-B-32 weights (%s); using the matting mask as saliency", str(exc).splitlines()[0]
            )
            method, note = "mask", " (no CLIP weights here)"
    sal = saliency_map(image, method=method, encoder=encoder, mask=mask if method == "mask" else None)
    edges = xdog_edges(image)
    smap = sampling_map(sal, edges, mask)
    probs = start_probabilities(smap, 0.3)
    strokes = initialize_strokes((canvas, canvas), args.strokes, (args.seed,), saliency=sal, edges=edges, mask=mask)
    pts = strokes.points[0].numpy()

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.9))
    panels = [
        (photo.permute(1, 2, 0).numpy(), f"photo ({args.photo}, {photo.shape[2]}x{photo.shape[1]})", None),
        (mask.numpy(), "u2netp mask (1 = object)", "gray"),
        (sal.numpy(), f"saliency: {method}{note}", "inferno"),
        (probs.numpy(), "softmax(saliency x ink / 0.3)", "magma"),
        (image.permute(1, 2, 0).numpy(), f"{args.strokes} start points, seed {args.seed}", None),
    ]
    for ax, (arr, title, cmap) in zip(axes, panels):
        ax.imshow(arr, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    ax = axes[-1]
    for stroke in pts:
        codes = [MplPath.MOVETO] + [MplPath.CURVE4] * (len(stroke) - 1)
        ax.add_patch(PathPatch(MplPath(stroke - 0.5, codes), fill=False, lw=1.5, color="black"))
    ax.scatter(pts[:, 0, 0] - 0.5, pts[:, 0, 1] - 0.5, s=14, c="red", zorder=3)
    axes[3].scatter(pts[:, 0, 0] - 0.5, pts[:, 0, 1] - 0.5, s=10, c="cyan", zorder=3)
    fig.suptitle("CLIPasso stroke initialization: matting -> saliency -> XDoG ink -> sampled starts", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
