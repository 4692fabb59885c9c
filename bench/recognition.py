"""Recognisability of the sketches: zero-shot CLIP classification by a judge model that did not make them.

    python bench/recognition.py --sketch-model RN101 --sketch-weights RN101.pt \\
        --judge-model ViT-B-16 --judge-weights ViT-B-16.pt [--saliency-weights ViT-B-32.pt] \\
        [--strokes 4 8 16 32] [--preset fast] [--device cuda]

As the paper judges recognisability: every test photo is sketched with CLIPasso by one CLIP model
(``--sketch-model``), then a second, different CLIP model (``--judge-model``) classifies the sketch
zero-shot against a list of class names, with the prompt "a sketch of a {class}." (a photo prompt for
the photos themselves, as a reference row). Reported: top-1 and top-5 accuracy per stroke count,
and each image's top prediction.

Only local checkpoints are used (a file path, or a file the loader finds in ``--models-dir``, the
``CLIPASSO_MODELS_DIR`` folder or open_clip's caches); nothing is downloaded. When no real weights
are found the script says so plainly and exits 0 WITHOUT numbers: randomly initialised CLIP models
recognise nothing, so any number they gave would be noise.

Test images ship with scikit-image (no downloads): chelsea (cat), coffee (a cup of coffee), astronaut,
horse (a silhouette), camera (the cameraman), rocket, clock. Strokes start from the saliency of
``--saliency-model`` (CLIP ViT attention) when its weights are local, else from the u2netp object mask.

Cost: one sketch per (image, stroke count). With the defaults (fast preset: 500 iterations, best of
2) that is about 1 minute per sketch on a recent GPU and about 10 minutes on a 2-core CPU.

Prints a table last; writes bench/results/recognition.json (only when numbers were measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"

# name -> (accepted class names, how to make the RGB uint8 image from scikit-image's data)
IMAGES: Dict[str, tuple] = {
    "chelsea": (("cat",), lambda d: d.chelsea()),
    "coffee": (("coffee cup", "cup"), lambda d: d.coffee()),
    "astronaut": (("astronaut", "person"), lambda d: d.astronaut()),
    "horse": (("horse",), lambda d: _grey_to_rgb((d.horse() * 255).astype("uint8"))),  # black horse on white
    "camera": (("person", "camera"), lambda d: _grey_to_rgb(d.camera())),
    "rocket": (("rocket",), lambda d: d.rocket()),
    "clock": (("clock",), lambda d: _grey_to_rgb(d.clock())),
}

# The classes the judge chooses from: the test objects and common distractors.
DEFAULT_CLASSES = (
    "airplane",
    "apple",
    "astronaut",
    "bicycle",
    "bird",
    "boat",
    "bus",
    "butterfly",
    "camera",
    "car",
    "cat",
    "chair",
    "clock",
    "coffee cup",
    "cow",
    "cup",
    "dog",
    "elephant",
    "fish",
    "flower",
    "guitar",
    "hat",
    "horse",
    "house",
    "lamp",
    "person",
    "rocket",
    "sheep",
    "shoe",
    "teapot",
    "tree",
    "umbrella",
)


def _grey_to_rgb(a):
    import numpy as np

    return np.repeat(a[..., None], 3, axis=2)


from clipasso.report.recognition import (  # noqa: E402,F401 - re-exported for scripts that import the bench
    PHOTO_TEMPLATE,
    SKETCH_TEMPLATE,
    RecognitionError,
    classify,
    image_embeddings,
    logit_scale_of,
    text_embeddings,
    top_k_hits,
    zero_shot_probs,
)


# --------------------------------------------------------------------------- weights


def find_weights(name: str, weights: Optional[str], models_dir, pretrained: str = "openai") -> Optional[Path]:
    """The local checkpoint for a model, or None when there is none (nothing is downloaded).

    An explicit ``weights`` path that does not exist is an error, not "no weights"."""
    from clipasso.models import find_weight_files

    if weights:
        p = Path(os.path.expanduser(weights))
        if not p.is_file():
            raise RecognitionError(f"weights file for {name!r} not found: {p}")
        return p
    found, _ = find_weight_files(name, pretrained, models_dir)
    return found[0] if found else None


def load_images(names: Sequence[str]) -> Dict[str, "object"]:
    from skimage import data

    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        raise RecognitionError(f"unknown test image(s) {unknown}; choose from {sorted(IMAGES)}")
    return {n: IMAGES[n][1](data) for n in names}


# --------------------------------------------------------------------------- the benchmark


def run(args) -> dict:
    import torch

    from clipasso.models import load_clip
    from clipasso.device import pick_device
    from clipasso.pipeline import prepare_target, sketch

    device = pick_device(args.device)
    torch.manual_seed(0)
    judge = load_clip(
        args.judge_model,
        args.pretrained,
        weights=args.judge_weights_path,
        models_dir=args.models_dir,
        device=device,
        allow_download=False,
    )
    classes = list(args.classes)
    for name in args.images:
        missing = [c for c in IMAGES[name][0] if c not in classes]
        if len(missing) == len(IMAGES[name][0]):
            raise RecognitionError(f"none of the classes of image {name!r} ({IMAGES[name][0]}) is in the class list")
    images = load_images(args.images)
    accepted = [IMAGES[n][0] for n in args.images]
    sketch_txt = text_embeddings(judge, classes, SKETCH_TEMPLATE)
    photo_txt = text_embeddings(judge, classes, PHOTO_TEMPLATE)
    scale = logit_scale_of(judge)

    # reference: the judge on the processed photos (what the sketches were made from)
    targets = {}
    for n, img in images.items():
        targets[n], _ = prepare_target(
            img, canvas=224, background_removal=not args.no_matting, models_dir=None, allow_download=False
        )
    photo_probs = zero_shot_probs(
        image_embeddings(judge, torch.stack([targets[n] for n in args.images])), photo_txt, scale
    )
    rows = [dict(strokes="photo", probs=photo_probs)]
    per_image = {}
    for n_strokes in args.strokes:
        renders = []
        for name in args.images:
            print(f"recognition: sketching {name} with {n_strokes} strokes ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            res = sketch(
                images[name],
                preset=args.preset,
                strokes=n_strokes,
                seeds=args.seeds,
                iterations=args.iterations,
                device=str(device),
                clip_model=args.sketch_model,
                clip_pretrained=args.pretrained,
                clip_weights=args.sketch_weights_path,
                saliency=args.saliency_method,
                saliency_model=args.saliency_model,
                saliency_pretrained=args.pretrained,
                saliency_weights=args.saliency_weights_path,
                background_removal=not args.no_matting,
                models_dir=args.models_dir,
                allow_download=False,
            )
            img = res.render(1.0)
            renders.append(img)
            per_image.setdefault(name, {})[n_strokes] = dict(
                seconds=time.perf_counter() - t0, loss=res.loss, seed=res.seed
            )
            if args.save_sketches:
                out = Path(args.save_sketches)
                out.mkdir(parents=True, exist_ok=True)
                res.save_png(out / f"{name}_{n_strokes}strokes.png")
        probs = zero_shot_probs(image_embeddings(judge, torch.stack(renders)), sketch_txt, scale)
        rows.append(dict(strokes=n_strokes, probs=probs))
    table = []
    for r in rows:
        probs = r["probs"]
        top1 = top_k_hits(probs, classes, accepted, 1)
        top5 = top_k_hits(probs, classes, accepted, 5)
        preds = [classes[int(i)] for i in probs.argmax(-1)]
        table.append(
            dict(
                strokes=r["strokes"],
                top1=sum(top1) / len(top1),
                top5=sum(top5) / len(top5),
                top1_hits=top1,
                top5_hits=top5,
                predictions=dict(zip(args.images, preds)),
                p_true=[
                    float(max(probs[i, classes.index(c)] for c in acc if c in classes))
                    for i, acc in enumerate(accepted)
                ],
            )
        )
    info = dict(
        sketch_model=args.sketch_model,
        sketch_weights=str(args.sketch_weights_path),
        judge_model=args.judge_model,
        judge_weights=str(args.judge_weights_path),
        saliency=args.saliency_method,
        saliency_weights=str(args.saliency_weights_path or ""),
        preset=args.preset,
        seeds=args.seeds,
        iterations=args.iterations,
        device=str(device),
        classes=classes,
        images={n: list(IMAGES[n][0]) for n in args.images},
        templates=dict(sketch=SKETCH_TEMPLATE, photo=PHOTO_TEMPLATE),
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    return dict(info=info, table=table, per_image=per_image)


def format_table(rep: dict) -> str:
    inf = rep["info"]
    lines = [
        f"Zero-shot recognition of CLIPasso sketches: sketched by {inf['sketch_model']}, judged by "
        f"{inf['judge_model']} over {len(inf['classes'])} classes ({len(inf['images'])} images, "
        f"preset {inf['preset']}, saliency {inf['saliency']})",
        f"{'strokes':<9}{'top-1':>7}{'top-5':>7}  top prediction per image",
    ]
    for r in rep["table"]:
        preds = ", ".join(f"{k}: {v}" for k, v in r["predictions"].items())
        lines.append(f"{str(r['strokes']):<9}{r['top1'] * 100:>6.0f}%{r['top5'] * 100:>6.0f}%  {preds}")
    lines.append(f"prompts: '{inf['templates']['sketch']}' for sketches, '{inf['templates']['photo']}' for the photos")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sketch-model", default="RN101", help="CLIP model that optimises the sketches (open_clip name)")
    ap.add_argument("--sketch-weights", default=None, help="its local checkpoint file")
    ap.add_argument("--judge-model", default="ViT-B-16", help="CLIP model that classifies the sketches; must differ")
    ap.add_argument("--judge-weights", default=None, help="its local checkpoint file")
    ap.add_argument("--saliency-model", default="ViT-B-32", help="CLIP ViT for the attention saliency")
    ap.add_argument("--saliency-weights", default=None, help="its local checkpoint (else the u2netp mask is used)")
    ap.add_argument("--pretrained", default="openai", help="pretrained tag used to find files by name")
    ap.add_argument("--models-dir", default=None, help="folder searched for checkpoints by name")
    ap.add_argument("--strokes", nargs="+", type=int, default=[4, 8, 16, 32])
    ap.add_argument("--preset", choices=["paper", "fast"], default="fast")
    ap.add_argument("--seeds", type=int, default=None, help="best of N (default: the preset's)")
    ap.add_argument("--iterations", type=int, default=None, help="default: the preset's")
    ap.add_argument("--images", nargs="+", default=list(IMAGES), help=f"from {sorted(IMAGES)}")
    ap.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), help="class names the judge chooses from")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-matting", action="store_true", help="sketch the photos with their background")
    ap.add_argument("--save-sketches", metavar="DIR", help="also write every sketch as PNG into DIR")
    ap.add_argument("--output", default=str(RESULTS / "recognition.json"), help="JSON file to write")
    args = ap.parse_args(argv)

    # rembg finds u2netp.onnx without a download: $U2NET_HOME, else the copy bundled with the package
    from bench.harness import u2net_folder

    if "U2NET_HOME" not in os.environ and u2net_folder():
        os.environ["U2NET_HOME"] = u2net_folder()
    try:
        args.sketch_weights_path = find_weights(
            args.sketch_model, args.sketch_weights, args.models_dir, args.pretrained
        )
        args.judge_weights_path = find_weights(args.judge_model, args.judge_weights, args.models_dir, args.pretrained)
    except RecognitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [
        f"{role} model {name!r}"
        for role, name, path in (
            ("sketching", args.sketch_model, args.sketch_weights_path),
            ("judge", args.judge_model, args.judge_weights_path),
        )
        if path is None
    ]
    if missing:
        print(
            "NO REAL CLIP WEIGHTS AVAILABLE: no local checkpoint was found for the "
            + " and the ".join(missing)
            + ". Recognition was NOT measured and no numbers are reported (randomly initialised CLIP models "
            "recognise nothing). Give local checkpoints with --sketch-weights FILE and --judge-weights FILE, "
            "or put them in --models-dir / $CLIPASSO_MODELS_DIR."
        )
        return 0
    same_file = args.sketch_weights_path.resolve() == args.judge_weights_path.resolve()
    if same_file or (
        args.sketch_model.replace("/", "-") == args.judge_model.replace("/", "-")
        and args.sketch_weights is None
        and args.judge_weights is None
    ):
        print(
            "error: the judge must be a different CLIP model from the one that optimised the sketches "
            "(otherwise it grades its own homework); choose another --judge-model / --judge-weights",
            file=sys.stderr,
        )
        return 2
    try:
        args.saliency_weights_path = find_weights(
            args.saliency_model, args.saliency_weights, args.models_dir, args.pretrained
        )
    except RecognitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.saliency_weights_path is not None:
        args.saliency_method = "clip-attention"
    elif not args.no_matting:
        args.saliency_method = "mask"
        print(
            f"note: no local weights for the saliency model {args.saliency_model!r}; strokes start on the u2netp "
            "object mask instead of CLIP attention",
            file=sys.stderr,
        )
    else:
        args.saliency_method = "none"
    if (
        args.saliency_weights_path is not None
        and args.judge_weights_path.resolve() == args.saliency_weights_path.resolve()
    ):
        print("note: the judge also made the saliency map the strokes start from (not the loss)", file=sys.stderr)
    try:
        rep = run(args)
    except RecognitionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(rep, default=str))
    path.write_text(json.dumps(slim, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    print(format_table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
