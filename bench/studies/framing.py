"""Framing benchmark: stretch (the original's default) vs fix-scale vs pad, weights-free.

Each non-square scikit-image photo is matted with the bundled u2netp, sketched with the trace loss
(no CLIP weights needed), start points from the object mask, and the sketch is compared with the
photo's outline (Canny edges of the matted photo + the mask's outline) in the PHOTO's frame, long
side 224: a stretched sketch is mapped back by the pipeline; a padded one is un-padded here. The
score is `clipasso.report.metrics.fscore` (3 px tolerance). Results: bench/results/framing_cpu.json.

    python bench/studies/framing.py --iterations 100 --pictures chelsea,coffee,rocket --seeds 0,1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def to_photo_frame(strokes, h, w, framing, size):
    """A square (padded) sketch -> the photo's frame (H, W), long side 224, padding cropped away."""
    from clipasso.prepare.images import framing_margin, square_box

    if framing == "stretch":
        return strokes  # sketch() already mapped it back
    side, top, left = square_box(h, w, framing_margin(h, w, framing))
    pts = (strokes.points * (side / strokes.width) - strokes.points.new_tensor([left, top])) * (size[1] / w)
    return strokes.replace(points=pts, canvas=size)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--strokes", type=int, default=16)
    ap.add_argument("--pictures", default="chelsea,coffee,rocket", help="skimage.data names, non-square")
    ap.add_argument("--seeds", default="0,1000")
    ap.add_argument("--json", help="write the rows and means here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from skimage import data

    import clipasso
    from clipasso.prepare.images import FRAMINGS, as_rgb, aspect_canvas, resize_to
    from clipasso.prepare.matting import remove_background
    from clipasso.report.metrics import edge_map, fscore, ink_map
    from clipasso.render.raster import render

    rows = []
    for name in args.pictures.split(","):
        img = getattr(data, name)()
        rgb = as_rgb(img)
        h, w = rgb.shape[-2:]
        size = aspect_canvas(h, w, 224)
        mat = remove_background(rgb, allow_download=False)
        edges = edge_map(resize_to(mat.image, size), resize_to(mat.mask[None], size, "bilinear")[0] >= 0.5)
        for framing in FRAMINGS:
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                res = clipasso.sketch(
                    img,
                    preset="fast",
                    framing=framing,
                    loss="trace",
                    saliency="mask",
                    iterations=args.iterations,
                    seeds=1,
                    seed=seed,
                    strokes=args.strokes,
                    device="cpu",
                    allow_download=False,
                )
                shown = to_photo_frame(res.strokes, h, w, framing, size)
                f = fscore(ink_map(render(shown).image), edges[None], size=None)
                rows.append(
                    dict(
                        picture=name,
                        size=f"{w}x{h}",
                        framing=framing,
                        seed=seed,
                        f=float(f["f"][0]),
                        precision=float(f["precision"][0]),
                        recall=float(f["recall"][0]),
                        seconds=round(time.perf_counter() - t0, 1),
                    )
                )
                print(json.dumps(rows[-1]), flush=True)
    means = defaultdict(list)
    for r in rows:
        means[r["framing"]].append(r["f"])
    summary = {k: sum(v) / len(v) for k, v in means.items()}
    for k, v in summary.items():
        print(f"{k:10s} mean F {v:.3f} over {len(means[k])} runs")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(settings=vars(args), rows=rows, mean_f=summary), fh, indent=1)


if __name__ == "__main__":
    main()
