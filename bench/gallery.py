"""The visual report in docs/: a PNG grid of sketches of scikit-image's pictures and a Markdown page.

    python bench/gallery.py                                  # docs/gallery.png + docs/report.md
    python bench/gallery.py --clip-weights RN101.pt          # the same grid with the real CLIP loss
    python bench/gallery.py --images horse chelsea --iterations 300

Rows: scikit-image's horse silhouette (its own mask) and photos matted with u2netp ($U2NET_HOME,
else the copy bundled in clipasso/data). Columns: input, mask, saliency with start points, sketches at 4, 8,
16, 32 strokes (with their edge F-score), loss curve of each seed. Without a CLIP checkpoint the
loss is the weights-free trace loss, and the caption says so. The page adds the tables of
bench/results/quality_cpu.json when present. Prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.quality import ALL_IMAGES, horse_rgba, u2net_folder  # noqa: E402


def picture(name: str):
    from skimage import data

    return horse_rgba() if name == "horse" else getattr(data, name)()


def main(argv=None) -> int:
    from clipasso.report import (
        DEFAULT_STROKES,
        caption_for,
        draw_grid,
        gallery_markdown,
        load_encoders,
        picture_summary,
        run_picture,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--images", nargs="+", default=["horse", "chelsea", "coffee", "astronaut"], choices=list(ALL_IMAGES)
    )
    ap.add_argument("--strokes", type=int, nargs="+", default=list(DEFAULT_STROKES))
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--clip-weights", help="CLIP checkpoint: use the CLIP loss instead of the trace loss")
    ap.add_argument("--clip-model", default="RN101")
    ap.add_argument("--saliency-weights", help="CLIP ViT checkpoint for attention saliency (else the object mask)")
    ap.add_argument("--saliency-model", default="ViT-B-32")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "docs" / "gallery.png"))
    ap.add_argument("--markdown", default=str(ROOT / "docs" / "report.md"))
    ap.add_argument("--quality-json", default=str(ROOT / "bench" / "results" / "quality_cpu.json"))
    ap.add_argument(
        "--json",
        default=str(ROOT / "bench" / "results" / "gallery_cpu.json"),
        help="scores and loss histories of the gallery run",
    )
    ap.add_argument(
        "--page-only",
        action="store_true",
        help="rewrite the Markdown page from --json and --quality-json (no sketching)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    md_path, qpath, jpath = Path(args.markdown), Path(args.quality_json), Path(args.json)
    quality = json.loads(qpath.read_text()) if qpath.is_file() else None
    qsrc = os.path.relpath(qpath, ROOT) if quality else ""
    if args.page_only:
        run = json.loads(jpath.read_text())
        md_path.write_text(
            gallery_markdown(
                run["pictures"],
                os.path.relpath(ROOT / run["image"], md_path.parent),
                run["caption"],
                run["settings"],
                quality,
                qsrc,
            )
        )
        print(f"gallery: {md_path}", file=sys.stderr)
        return 0

    enc, sal, loss = load_encoders(
        args.clip_weights, args.clip_model, args.saliency_weights, args.saliency_model, device=args.device
    )
    folder = u2net_folder()
    seeds = [1000 * i for i in range(args.seeds)]
    pics = []
    for name in args.images:
        if name != "horse" and folder is None:
            print(f"gallery: skipping {name}: u2netp.onnx not found (set U2NET_HOME)", file=sys.stderr)
            continue
        pics.append(
            run_picture(
                name,
                picture(name),
                strokes=args.strokes,
                iterations=args.iterations,
                seeds=seeds,
                loss=loss,
                encoder=enc,
                saliency_encoder=sal,
                models_dir=folder,
                log=lambda m: print(m, file=sys.stderr, flush=True),
            )
        )
    title = (
        f"{'trace loss (weights-free, not CLIP)' if loss == 'trace' else 'CLIP loss (' + enc.name + ')'}, "
        f"fast preset, {args.iterations} iterations, best of {args.seeds} seeds; F = edge F-score"
    )
    out = draw_grid(pics, args.out, title=title, curve_strokes=16)
    settings = dict(
        loss=loss, preset="fast", iterations=args.iterations, seeds=args.seeds, threads=args.threads, device=args.device
    )
    caption = caption_for(loss, enc, sal)
    md_path.write_text(gallery_markdown(pics, os.path.relpath(out, md_path.parent), caption, settings, quality, qsrc))
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(
        json.dumps(
            dict(
                image=os.path.relpath(out, ROOT),
                caption=caption,
                settings=settings,
                pictures=[picture_summary(p) for p in pics],
            ),
            indent=1,
        )
    )
    print(f"gallery: {out} ({out.stat().st_size / 1e6:.2f} MB), {md_path}", file=sys.stderr)
    counts = args.strokes
    print("| picture | " + " | ".join(f"{n} strokes F" for n in counts) + " | seconds |")
    print("|---|" + "---|" * len(counts) + "---|")
    for p in pics:
        print(f"| {p.name} | " + " | ".join(f"{p.scores[n]['f']:.3f}" for n in counts) + f" | {p.seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
