"""A visual report: a PNG grid of sketches per picture (matplotlib) and a short Markdown page.

Per picture, one row: the input, the object mask, the saliency map with the stroke start points,
the sketches at several abstraction levels (4, 8, 16, 32 strokes by default, each titled with its
edge F-score from `clipasso.report.metrics`) and the loss curve of every seed.

The loss is CLIPasso's CLIP loss when a CLIP checkpoint is given (``clip_weights``), otherwise the
weights-free trace loss (`clipasso.objective.losses.TraceLoss`); the figure title says which. Saliency is
CLIP attention when a ViT checkpoint is given (``saliency_weights``), otherwise the object mask.

    clipasso report photo1.jpg photo2.png -o gallery.png --markdown report.md
    python bench/gallery.py       # the committed docs/gallery.png and docs/report.md
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Optional, Sequence

from ..errors import ClipassoError  # no torch at import: `clipasso report --help` and its checks stay light

if TYPE_CHECKING:
    import torch

DEFAULT_STROKES = (4, 8, 16, 32)


class ReportError(ClipassoError, ValueError):
    """Settings the report cannot work with."""


@dataclass
class PictureRun:
    name: str
    image: torch.Tensor  # [3,H,W] the input as given (alpha over white)
    target: torch.Tensor  # [3,S,S]
    mask: Optional[torch.Tensor]  # [S,S]
    saliency: Optional[torch.Tensor]  # [S,S]
    sketches: Dict[int, object] = field(default_factory=dict)  # strokes -> winner Strokes
    runs: Dict[int, object] = field(default_factory=dict)  # strokes -> OptimizeResult
    initial: Dict[int, object] = field(default_factory=dict)  # strokes -> initial Strokes
    scores: Dict[int, Dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: bool = False  # should_stop cut it short: the stroke counts after the last are missing


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a bench/test dependency
        raise ReportError("the report needs matplotlib: pip install matplotlib") from exc
    return plt


def _edges(target, mask):
    from .metrics import MetricError, edge_map

    try:
        return edge_map(target, mask, method="canny")
    except MetricError:  # no scikit-image: CLIPasso's own XDoG outline
        return edge_map(target, mask, method="xdog")


def run_picture(
    name: str,
    image,
    *,
    strokes: Sequence[int] = DEFAULT_STROKES,
    iterations: int = 150,
    seeds: Sequence[int] = (0, 1000),
    loss: str = "trace",
    encoder=None,
    saliency_encoder=None,
    background_removal: bool = True,
    models_dir=None,
    allow_download: bool = False,
    canvas: int = 224,
    preset: str = "fast",
    log: Optional[Callable[[str], None]] = None,
    framing: Optional[str] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> PictureRun:
    """Prepare one picture once (matting, saliency, XDoG) and sketch it at every stroke count.

    framing: as `clipasso.pipeline.sketch` (None = the preset's). Scores are measured in the square
    optimisation frame, against the target; ``sketches`` are kept in the picture's frame (a stretched
    sketch is mapped back to the picture's aspect ratio), as `sketch` returns them.

    should_stop(): checked before each stroke count and at every iteration; when it returns True the
    sketch being optimised keeps its best state so far, the later stroke counts are left out and
    ``stopped`` is set."""
    import torch

    from ..prepare.images import as_rgb
    from ..place.init import initialize_strokes
    from .metrics import sketch_fidelity
    from ..optimize import OptimizeConfig, optimize
    from ..settings import PRESETS
    from ..pipeline import prepare_target, to_picture_frame
    from ..prepare.target import shrink_early
    from ..render.raster import render
    from ..place.saliency import saliency_map
    from ..post.select import select_best
    from ..prepare.xdog import xdog_edges

    t0 = time.perf_counter()
    original = image  # prepare_target measures fix-scale's margin in the input's own pixels
    image = shrink_early(image)
    shown = as_rgb(image)
    framing = PRESETS[preset].get("framing", "pad") if framing is None else framing
    target, mask = prepare_target(
        original,
        canvas=canvas,
        background_removal=background_removal,
        models_dir=models_dir,
        allow_download=allow_download,
        framing=framing,
    )
    if saliency_encoder is not None:
        sal = saliency_map(target, method="clip-attention", encoder=saliency_encoder, mask=mask)
    elif mask is not None:
        sal = saliency_map(target, method="mask", mask=mask)
    else:
        sal = None
    ink = xdog_edges(target)
    edges = _edges(target, mask)
    out = PictureRun(name=name, image=shown, target=target, mask=mask, saliency=sal)
    device = encoder.device if encoder is not None else torch.device("cpu")
    for n in strokes:
        if should_stop is not None and should_stop():
            out.stopped = True
            break
        init = initialize_strokes((canvas, canvas), int(n), list(seeds), saliency=sal, edges=ink, mask=mask)
        cfg = OptimizeConfig.from_preset(preset, iterations=iterations, loss=loss)
        res = optimize(init, target, encoder, cfg, device=device, should_stop=should_stop)
        winner, _ = select_best(res.strokes)
        s = sketch_fidelity(render(winner).image, target, mask, edges=edges)
        out.sketches[n] = to_picture_frame(winner, shown.shape[-2], shown.shape[-1], framing)
        out.runs[n], out.initial[n] = res, init
        out.scores[n] = {k: v[0] for k, v in s.items()}
        out.scores[n]["loss"] = float(winner.losses[0])
        if log:
            log(
                f"report: {name}, {n} strokes: loss {float(winner.losses[0]):.4f}, F {s['f'][0]:.3f} "
                f"({res.seconds:.0f} s)"
                + (f"; stopped at iteration {res.iterations_run} of {iterations}" if res.cancelled else "")
            )
        if res.cancelled:
            out.stopped = True
            break
    out.seconds = time.perf_counter() - t0
    return out


def draw_grid(
    pictures: Sequence[PictureRun],
    path,
    title: str = "",
    curve_strokes: Optional[int] = None,
    dpi: int = 100,
    counts: Optional[Sequence[int]] = None,
) -> Path:
    """The PNG grid: one row per picture; a column per stroke count (``counts``, default: those the pictures
    have), a count a picture lacks (its run was stopped) drawn as "not done"."""
    from ..render.raster import render

    plt = _matplotlib()
    if not pictures:
        raise ReportError("no pictures to draw")
    counts = list(dict.fromkeys(counts)) if counts is not None else _all_counts(pic.sketches for pic in pictures)
    cols = 3 + len(counts) + 1
    fig, axes = plt.subplots(
        len(pictures),
        cols,
        figsize=(1.75 * cols + 0.6, 1.95 * len(pictures) + 0.5),
        squeeze=False,
        gridspec_kw=dict(width_ratios=[1] * (cols - 1) + [1.35]),
    )
    colors = plt.get_cmap("viridis")
    for r, pic in enumerate(pictures):
        ax = axes[r]
        ax[0].imshow(pic.image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax[0].set_title(pic.name, fontsize=9)
        if pic.mask is not None:
            ax[1].imshow(pic.mask.numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax[1].text(0.5, 0.5, "no mask", ha="center", va="center", fontsize=8, transform=ax[1].transAxes)
        ax[1].set_title("mask", fontsize=9)
        if pic.saliency is not None:
            ax[2].imshow(pic.saliency.numpy(), cmap="magma")
        done = [n for n in counts if n in pic.sketches]
        if done:
            mid = curve_strokes if curve_strokes in pic.initial else done[len(done) // 2]
            starts = pic.initial[mid].points[0, :, 0]  # first seed's start points
            ax[2].scatter(starts[:, 0].numpy(), starts[:, 1].numpy(), s=7, c="#00e5ff", edgecolors="none")
            ax[2].set_title(f"saliency + {mid} starts", fontsize=9)
        else:
            ax[2].set_title("saliency", fontsize=9)
        for c, n in enumerate(counts):
            if n not in pic.sketches:
                ax[3 + c].text(
                    0.5, 0.5, "not done\n(stopped)", ha="center", va="center", fontsize=8, transform=ax[3 + c].transAxes
                )
                ax[3 + c].set_title(f"{n} strokes", fontsize=9)
                continue
            img = render(pic.sketches[n]).image[0].permute(1, 2, 0).clamp(0, 1).numpy()
            a = ax[3 + c]
            a.imshow(img)
            cut = getattr(pic.runs.get(n), "cancelled", False)  # stopped before its last iteration
            a.set_title(f"{n} strokes, F {pic.scores[n]['f']:.2f}" + (" (cut)" if cut else ""), fontsize=9)
        a = ax[-1]
        for i, n in enumerate(counts):
            if n not in pic.runs:
                continue
            run = pic.runs[n]
            hist = run.history.numpy()
            for s in range(hist.shape[1]):
                a.plot(
                    run.history_iterations,
                    hist[:, s],
                    color=colors(i / max(1, len(counts) - 1)),
                    linestyle="-" if s == 0 else "--",
                    linewidth=1,
                    label=f"{n}" if s == 0 else None,
                )
        a.set_title("loss per seed", fontsize=9)
        a.tick_params(labelsize=7)
        a.set_xlabel("iteration", fontsize=7)
        a.legend(fontsize=6, title="strokes", title_fontsize=6, frameon=False, loc="upper right")
        for i, a in enumerate(ax[:-1]):
            a.set_xticks([])
            a.set_yticks([])
            for sp in a.spines.values():  # a light frame around the sketches (white on white otherwise)
                sp.set_visible(i >= 3)
                sp.set_color("#c8c8c8")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97 if title else 1))
    from ..atomic import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # never a half-written PNG, the previous one kept on failure
            fig.savefig(tmp, dpi=dpi, format=(path.suffix[1:].lower() or "png"))
    finally:
        plt.close(fig)
    return path


def _all_counts(per_picture) -> list:
    """The stroke counts of every picture, in the order they were run (a stopped picture has fewer)."""
    return list(dict.fromkeys(n for counts in per_picture for n in counts))


def quality_markdown(report: dict) -> str:
    """The table of `bench/quality.py`'s JSON as Markdown."""
    info = report["info"]

    def f3(v):
        return "-" if v is None or (isinstance(v, float) and v != v) else f"{v:.3f}"

    def f2(v):
        return "-" if v is None else f"{v:.2f}"

    lines = [
        "| image | loss | F | F win | precision | recall | coverage | s/it | CPU s/it |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['image']} | {r['loss']} | {f3(r['f'])} | {f3(r.get('f_winner'))} | {f3(r['precision'])} | "
            f"{f3(r['recall'])} | {f3(r['coverage'])} | {f2(r.get('seconds_per_iteration'))} | "
            f"{f2(r.get('cpu_seconds_per_iteration'))} |"
        )
    skipped = [f"{n}: {p['skipped']}" for n, p in report.get("pictures", {}).items() if "skipped" in p]
    head = (
        f"{info['strokes']} strokes, seeds {info['seeds']}, preset {info['preset']}, {info['iterations']} "
        f"iterations"
        + (f" ({info['rn101_iterations']} for clip-rn101)" if info.get("rn101_iterations") else "")
        + f"; CPU, {info['threads']} threads; edges: {info['edges']}; tolerance {info['tolerance_px']} px at "
        f"{info['metric_size']}, coverage within {info['cover_radius_px']} px."
    )
    tail = []
    if info.get("load_average_start") is not None:
        tail = [
            "",
            f"Run time {info['seconds_total']:.0f} s; load average {info['load_average_start']:.1f} at the "
            f"start and {info['load_average_end']:.1f} at the end on {info['cores']} cores: with other jobs "
            "on the machine the wall (and, less so, CPU) seconds per iteration are inflated.",
        ]
    return "\n".join([head, "", *lines, *(["", "Skipped: " + "; ".join(skipped)] if skipped else []), *tail])


def picture_summary(pic: PictureRun) -> dict:
    """What the page shows of a picture's run (JSON-friendly)."""
    cut = {str(n): r.iterations_run for n, r in pic.runs.items() if getattr(r, "cancelled", False)}
    return dict(
        name=pic.name,
        seconds=pic.seconds,
        scores={str(n): {k: float(v) for k, v in sc.items()} for n, sc in pic.scores.items()},
        history={
            str(n): dict(iterations=list(r.history_iterations), losses=r.history.tolist()) for n, r in pic.runs.items()
        },
        **({"stopped_at": cut} if cut else {}),
    )  # a sketch cut short by a stop: its iterations


def gallery_markdown(
    pictures: Sequence,
    image_name: str,
    caption: str,
    settings: dict,
    quality: Optional[dict] = None,
    quality_source: str = "",
    counts: Optional[Sequence[int]] = None,
) -> str:
    """The page: gallery image, caption, per-picture table, quality table. ``pictures``: `PictureRun`s or
    `picture_summary` dicts; ``counts``: the table's stroke counts (default: those the pictures have; a
    picture without one shows "not done")."""
    pictures = [p if isinstance(p, dict) else picture_summary(p) for p in pictures]
    counts = (
        list(dict.fromkeys(str(n) for n in counts))
        if counts is not None
        else _all_counts(p["scores"] for p in pictures)
    )
    out = ["# CLIPasso visual report", "", f"![gallery]({image_name})", "", caption, ""]
    out += [
        "## Gallery run",
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".",
        "",
        "| picture | " + " | ".join(f"{n} strokes: F / loss" for n in counts) + " | wall seconds |",
        "|---|" + "---|" * len(counts) + "---|",
    ]
    for p in pictures:
        cut = p.get("stopped_at", {})
        cells = [
            (
                f"{p['scores'][n]['f']:.3f} / {p['scores'][n]['loss']:.3f}"
                + (f" (stopped at iteration {cut[n]})" if n in cut else "")
            )
            if n in p["scores"]
            else "not done"
            for n in counts
        ]
        out.append(f"| {p['name']} | " + " | ".join(cells) + f" | {p['seconds']:.0f} |")
    out += [
        "",
        "F: edge F-score of the winning sketch (ink within 3 px of the target's Canny edges or mask "
        "outline, at 224 px; `clipasso.report.metrics`).",
        "",
        "Reading the numbers: on a silhouette (the horse) the only edge is the outline, so F measures "
        "tracing cleanly. On textured photos Canny finds edges almost everywhere on the object, so nearly any "
        "ink on it counts as precise and F overstates the likeness; compare such numbers before and after "
        "optimisation, not across pictures. The trace loss follows every XDoG line, texture included, which is "
        "why the photos come out as scribbles: it shows what the renderer and optimiser reach without CLIP, it "
        "does not replace CLIP's abstraction.",
    ]
    if quality is not None:
        out += ["", "## Fidelity before and after optimisation", ""]
        if quality_source:
            out += [f"From `{quality_source}` (`python bench/quality.py`).", ""]
        out += [quality_markdown(quality), "", quality["info"].get("note", "")]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- command line


def add_report_parser(sub) -> None:
    rp = sub.add_parser(
        "report",
        help="render a PNG gallery (and Markdown page) of sketches at several stroke counts",
        description="Sketch each INPUT at several stroke counts and draw a PNG grid: input, mask, "
        "saliency with start points, the sketches, the loss curve of each seed. Uses "
        "the CLIP loss with --clip-weights, otherwise the weights-free trace loss.",
        epilog="exit status: 0 done; 1 an error while working; 2 a bad option, input or output "
        "path, found before any work starts; 143 stopped by SIGTERM, after writing the "
        "report of the sketches done so far (the PNG and the page are written to a "
        "temporary file and renamed over the target, never left half-written).",
    )
    rp.add_argument("inputs", nargs="*", metavar="INPUT", help="image files (default: the bundled example)")
    rp.add_argument("-o", "--output", default="gallery.png", metavar="OUT.png", help="PNG to write")
    rp.add_argument("--markdown", metavar="OUT.md", help="also write a Markdown page with the tables")
    rp.add_argument("--quality-json", metavar="FILE", help="bench/quality.py results to add to the page")
    rp.add_argument("--strokes", type=int, nargs="+", default=list(DEFAULT_STROKES), help="stroke counts (4 8 16 32)")
    rp.add_argument("--iterations", type=int, default=150, help="per sketch (default 150)")
    rp.add_argument("--seeds", type=int, default=2, help="seeds per sketch (default 2)")
    rp.add_argument("--clip-weights", metavar="FILE", help="CLIP checkpoint: use the CLIP loss (else trace loss)")
    rp.add_argument("--clip-model", default="RN101", metavar="NAME", help="open_clip model of --clip-weights")
    rp.add_argument(
        "--saliency-weights", metavar="FILE", help="CLIP ViT checkpoint for attention saliency (else the object mask)"
    )
    rp.add_argument("--saliency-model", default="ViT-B-32", metavar="NAME")
    rp.add_argument(
        "--models-dir",
        metavar="DIR",
        action="append",
        help="folder with model files (repeatable; u2netp.onnx ships with clipasso)",
    )
    rp.add_argument(
        "--framing",
        choices=("stretch", "fix-scale", "pad"),
        help="how pictures go onto the square canvas (default pad, the fast preset's; see clipasso sketch)",
    )
    rp.add_argument("--no-background-removal", action="store_true")
    rp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def load_encoders(
    clip_weights=None,
    clip_model="RN101",
    saliency_weights=None,
    saliency_model="ViT-B-32",
    models_dir=None,
    device="cpu",
):
    """(loss encoder or None, saliency encoder or None, loss name) from the given checkpoints."""
    from ..models import load_clip

    enc = sal = None
    if clip_weights:
        enc = load_clip(clip_model, weights=clip_weights, models_dir=models_dir, device=device, allow_download=False)
    if saliency_weights:
        sal = load_clip(
            saliency_model, weights=saliency_weights, models_dir=models_dir, device=device, allow_download=False
        )
    return enc, sal, ("clip" if enc is not None else "trace")


def caption_for(loss: str, enc, sal) -> str:
    if loss == "trace":
        what = (
            "Loss: the weights-free **trace** loss (multi-scale blurred ink compared with the picture's XDoG "
            "outline), not CLIP: no pretrained CLIP weights were available when this was made. Pass a CLIP "
            "checkpoint (`--clip-weights`) to draw the same grid with CLIPasso's CLIP loss."
        )
    else:
        what = f"Loss: CLIPasso's CLIP loss with {enc.name} ({enc.source})."
    sal_txt = (
        f"Saliency: CLIP attention of {sal.name}."
        if sal is not None
        else "Saliency: the object mask (no CLIP ViT weights given), with XDoG ink rule for the start points."
    )
    return what + " " + sal_txt


# the bundled example (`clipasso.pipeline.EXAMPLE_IMAGE`, named here so that the checks import no torch)
EXAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "data" / "example.jpg"


def run_report_cli(args) -> int:
    """`clipasso report`: every input, option and output path is checked before torch is imported. On
    SIGTERM it stops at the next iteration, writes the report of the sketches done so far (atomically, as
    always) and returns 143; a second SIGTERM stops at once."""
    import signal
    import sys

    inputs = args.inputs or [str(EXAMPLE_IMAGE)]
    from ..cli.options import LIMITS, limit_problems, sigterm_stop, signal_handlers
    from ..output.paths import OutputPathError, check_output_paths

    from ..prepare.files import ImageError, check_image_path

    for p in inputs:
        try:
            check_image_path(p)  # missing, a folder, a link loop, a name too long, ...
        except ImageError as exc:
            msg = str(exc)
            if msg.startswith("image file not found"):
                msg = msg.replace("image file not found", "input image not found", 1)
            print(f"clipasso: error: {msg}", file=sys.stderr)
            return 2
    if args.quality_json and not os.path.isfile(args.quality_json):
        print(
            f"clipasso: error: --quality-json {args.quality_json} not found (bench/quality.py writes it)",
            file=sys.stderr,
        )
        return 2
    problems = limit_problems(args, ("strokes", "iterations", "seeds"))
    too_many = LIMITS["strokes_x_seeds"].problem("strokes x seeds", max(args.strokes) * args.seeds)
    if problems or too_many:
        print(f"clipasso: error: {(problems or [too_many])[0]}", file=sys.stderr)
        return 2
    try:
        check_output_paths(
            [
                ("-o", args.output, (".png",), "the report is a PNG grid; the page goes to --markdown"),
                ("--markdown", args.markdown, (".md",), ""),
            ],
            [*inputs, args.quality_json, args.clip_weights, args.saliency_weights],
        )
    except OutputPathError as exc:
        print(f"clipasso: error: {exc}", file=sys.stderr)
        return 2
    terminated = 128 + signal.SIGTERM
    stop = {"terminated": False}

    # as `clipasso sketch`: stop, write what is done, exit 143
    on_sigterm = sigterm_stop(
        stop, "stopping after this iteration and writing the report of the sketches done so far..."
    )
    with signal_handlers({signal.SIGTERM: on_sigterm}):
        return _report(args, inputs, stop, terminated)


def _report(args, inputs, stop, terminated) -> int:
    import sys

    from ..device import pick_device  # the work (and torch) starts here

    try:
        dev = pick_device(args.device)
        enc, sal, loss = load_encoders(
            args.clip_weights, args.clip_model, args.saliency_weights, args.saliency_model, args.models_dir, dev
        )
        seeds = [1000 * i for i in range(args.seeds)]
        pics = []
        for p in inputs:
            if stop["terminated"]:
                break
            pics.append(
                run_picture(
                    Path(p).stem,
                    p,
                    strokes=args.strokes,
                    iterations=args.iterations,
                    seeds=seeds,
                    loss=loss,
                    encoder=enc,
                    saliency_encoder=sal,
                    background_removal=not args.no_background_removal,
                    models_dir=args.models_dir,
                    framing=args.framing,
                    log=lambda m: print(m, file=sys.stderr),
                    should_stop=lambda: stop["terminated"],
                )
            )
        pics = [pic for pic in pics if pic.sketches]  # a picture stopped before its first sketch has no row
        caption = caption_for(loss, enc, sal)
        title = f"{loss} loss, {args.iterations} iterations, best of {args.seeds}"
        if stop["terminated"]:
            if not pics:
                print(
                    f"clipasso: stopped by SIGTERM before the first sketch was done: no report written (exit "
                    f"status {terminated})",
                    file=sys.stderr,
                )
                return terminated
            done = sum(len(pic.sketches) for pic in pics)
            title += f" (stopped by SIGTERM after {done} of {len(inputs) * len(args.strokes)} sketches)"
            caption += (
                f" Stopped by SIGTERM after {done} of {len(inputs) * len(args.strokes)} sketches: the report "
                "holds those done (the last one possibly before its final iteration)."
            )
        out = draw_grid(pics, args.output, title=title, counts=args.strokes)
        print(f"report: {out}")
        if args.markdown:
            quality = json.loads(Path(args.quality_json).read_text()) if args.quality_json else None
            md = gallery_markdown(
                pics,
                os.path.relpath(out, Path(args.markdown).parent),
                caption,
                dict(loss=loss, iterations=args.iterations, seeds=args.seeds),
                quality,
                args.quality_json or "",
                counts=args.strokes,
            )
            from ..atomic import write_text_atomic

            write_text_atomic(args.markdown, md)
            print(f"report: {args.markdown}")
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"clipasso: error: {exc}", file=sys.stderr)
        return 1
    if stop["terminated"]:
        print(
            f"report: stopped by SIGTERM: the report holds the sketches done so far (exit status {terminated})",
            flush=True,
        )
        return terminated
    return 0


__all__ = [
    "run_picture",
    "draw_grid",
    "gallery_markdown",
    "quality_markdown",
    "load_encoders",
    "caption_for",
    "add_report_parser",
    "run_report_cli",
    "picture_summary",
    "PictureRun",
    "ReportError",
    "DEFAULT_STROKES",
]
