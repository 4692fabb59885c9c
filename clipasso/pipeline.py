"""Image in, sketch out: the whole CLIPasso pipeline as one call (used by the CLI, the one-box node, tests).

The stages in order, each a call into its folder:

    prepare    picture -> square target and object mask (prepare.target: matting, framing)
    place      saliency map and XDoG ink map -> starting strokes per seed (place.saliency, place.init)
    objective  one loss object for the target (objective.Objective)
    optimize   all seeds as one batch (optimize.optimize)
    post       best of N (post.select), automatic abstraction, drawing order (post.abstraction, post.order)
    output     a stretched sketch mapped back to the picture's shape; SVG / PNG (output)
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from .device import pick_device, precision_label
from .errors import PipelineError
from .models import loss_encoder
from .optimize import OptimizeResult, optimize
from .place.saliency import saliency_for_settings as _saliency
from .post.select import select_best
from .post.stage import post_process
from .prepare.target import prepare_picture, prepare_target, to_picture_frame
from .settings import SketchSettings
from .strokes import Strokes

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
EXAMPLE_IMAGE = DATA_DIR / "example.jpg"


@dataclass
class SketchResult:
    """What `sketch` returns.

    Two frames: the optimisation frame is the square ``canvas`` x ``canvas`` the loss saw (the picture
    framed as ``framing`` says); the picture frame has the input's aspect ratio. ``strokes`` and
    ``candidates`` (what the SVG/PNG show) are in the picture frame: with framing "stretch" and a
    non-square input they are the optimised strokes scaled back to the input's aspect ratio (long
    side = canvas, pen widths kept), otherwise they are the optimised strokes as they are (the
    padded square is already the picture's shape). ``target``, ``mask``, ``saliency``, ``initial``,
    ``frame_strokes``, ``run``, ``abstraction`` and ``drawing_order`` stay in the optimisation frame,
    so they line up with each other and with the losses.
    """

    strokes: Strokes  # the winner: one candidate, with its loss, seed and best iteration
    candidates: Strokes  # every candidate's best state (losses = best eval loss)
    index: int  # winner's position in `candidates`
    target: torch.Tensor  # [3, S, S] the processed image the loss compared against
    mask: Optional[torch.Tensor]
    saliency: Optional[torch.Tensor]
    initial: Strokes
    run: OptimizeResult
    settings: Dict
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0
    abstraction: Optional[object] = None  # clipasso.post.abstraction.AbstractionResult (auto_strokes)
    drawing_order: Optional[object] = None  # clipasso.post.order.OrderResult (drawing_order=True)
    framing: str = "pad"  # how the picture was put on the canvas (clipasso.prepare.images.FRAMINGS)
    frame_strokes: Optional[Strokes] = None  # the winner in the optimisation frame (as the loss saw it)
    sketch_settings: Optional[SketchSettings] = None  # every setting the sketch was made with
    # scene mode (clipasso.scene): each layer's own result by name, and what the joint pass did; then
    # `strokes` is the joined, layer-labelled sketch after the joint pass, `candidates` the same, `target` the
    # whole picture, `saliency` the layers' start-point maps together and `run` the joint pass's run
    layers: Optional[Dict[str, object]] = None  # clipasso.scene.LayerResult per layer name
    joint: Optional[object] = None  # clipasso.scene.JointResult

    @property
    def loss(self) -> float:
        return float(self.strokes.losses[0])

    @property
    def seed(self) -> int:
        return int(self.strokes.seeds[0])

    def svg(self) -> str:
        from .output.svg import to_svg

        return to_svg(self.strokes)

    def save_svg(self, path) -> None:
        from .output.svg import write_svg

        write_svg(self.strokes, path)

    def render(self, scale: float = 2.0) -> torch.Tensor:
        """The winner rendered on white at ``scale`` x the canvas (2x = 448 px, as the original's PNG)."""
        from .render.raster import render

        h, w = self.strokes.canvas
        return render(self.strokes, size=(round(h * scale), round(w * scale))).image[0]

    def save_png(self, path, scale: float = 2.0) -> None:
        from .prepare.images import to_pil

        from .atomic import save_image_atomic

        save_image_atomic(to_pil(self.render(scale)), path)


def sketch(
    image=None,
    settings: Optional[SketchSettings] = None,
    *,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    **overrides,
) -> SketchResult:
    """Sketch ``image`` (file path, PIL, numpy, tensor; None = the bundled example) with CLIPasso.

    settings: a `clipasso.settings.SketchSettings` (default: the ``preset`` override's, else "paper");
    overrides: any of its fields by name, e.g. ``sketch("cat.jpg", preset="fast", strokes=8, loss="trace",
    text="a cat, side view", auto_strokes=0.9)``; ``clipasso sketch --help`` and `clipasso.settings` list
    them all with their defaults and ranges. An override of None keeps the preset's value.
    Main ones: preset 'paper' (RN101, 4 augmentations, 2000 iterations, 16 strokes, best of 3) or 'fast';
    seeds: a count (seeds are seed, seed+1000, ...) or an explicit list; saliency: 'clip-attention' (the
    original), another `clipasso.place.saliency` method, or 'none'; auto_strokes: a fidelity in (0, 1], the
    sketch chooses its stroke count (`clipasso.post.abstraction`, prune or grow); framing: how the picture goes
    onto the square canvas (see `SketchResult` for which frame holds what); models_dir: a folder or a
    list of folders for CLIP and matting weights ($CLIPASSO_MODELS_DIR too).
    callback(iteration, losses, render) and should_stop() go to `clipasso.optimize.optimize`.
    """
    t0 = time.perf_counter()
    if settings is None:
        s = SketchSettings.from_preset(overrides.pop("preset", None) or "paper", **overrides)
    elif not isinstance(settings, SketchSettings):
        raise PipelineError(f"settings must be a clipasso.settings.SketchSettings; got {type(settings).__name__}")
    else:
        s = settings.replace(**overrides)
    s.validate()
    cfg = s.optimize_config()
    dev = pick_device(s.device)
    notes: List[str] = []
    seed_list = s.seed_list()
    canvas = int(s.canvas)

    if image is None:
        image = EXAMPLE_IMAGE
        notes.append(f"no input given: sketching the bundled example {EXAMPLE_IMAGE.name}")
    if s.scene:  # the whole picture in layers (clipasso.scene)
        from .scene import sketch_scene

        parts = sketch_scene(image, s, callback=callback, should_stop=should_stop, notes=notes)
        summary = {name: value for name, value in s.to_dict().items() if name in SUMMARY_FIELDS}
        summary.update(parts.pop("summary"))
        return SketchResult(
            **parts,
            settings=summary,
            notes=notes,
            seconds=time.perf_counter() - t0,
            framing=s.framing,
            sketch_settings=s,
        )
    target, mask, (pic_h, pic_w) = prepare_picture(image, s.prepare, s.models_dir, s.allow_download, notes)

    encoder = None  # loss="trace" needs no CLIP model (the saliency step may still use one)
    if cfg.uses_clip:
        encoder = loss_encoder(s, dev)
    from .objective import Objective

    objective = Objective.build(cfg, encoder, target, dev)  # once: optimiser, selection, pruning, growing, order

    sal = _saliency(target, mask, s, dev)
    edges = None
    if s.use_edges and sal is not None:
        from .prepare.xdog import xdog_edges

        edges = xdog_edges(target)
    from .place.init import initialize_strokes

    n_strokes = s.optimized_strokes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initial = initialize_strokes(
            (canvas, canvas), n_strokes, list(seed_list), saliency=sal, edges=edges, mask=mask, settings=s
        )
    notes.extend(str(w.message) for w in caught)

    run = optimize(initial, target, objective, cfg, callback=callback, should_stop=should_stop, seeds=seed_list)
    winner, index = select_best(run.strokes)
    ordering = ab_result = None
    if s.auto_strokes is not None or s.drawing_order:
        prior = None
        if s.abstraction_method == "grow" and sal is not None:  # grown strokes go where ink helps, times saliency
            prior = sal if mask is None else sal * mask.to(sal)
            if not float(prior.max()) > 0:
                prior = None
        winner, ab_result, ordering = post_process(
            winner, target, objective, cfg, s, should_stop=should_stop, prior=prior
        )
    if run.cancelled:
        notes.append(
            f"cancelled after {run.iterations_run} of {cfg.iterations} iterations; returning the best state reached"
        )
    elif run.stop_reason == "plateau":
        notes.append(
            f"stopped on a plateau at iteration {run.iterations_run} of {cfg.iterations}: no seed's loss "
            f"improved by more than {100 * cfg.plateau:g}% over the last {cfg.plateau_window} steps"
        )
    summary = {name: value for name, value in s.to_dict().items() if name in SUMMARY_FIELDS}
    summary.update(
        strokes=int(n_strokes),
        seeds=list(seed_list),
        canvas=canvas,
        device=str(dev),
        clip_model=encoder.name if encoder is not None else None,
        clip_source=encoder.source if encoder is not None else None,
        text_weight=cfg.text_weight if cfg.text else None,
        reseed_interval=cfg.reseed_every,
        abstraction=(s.abstraction_method if s.auto_strokes is not None else None),
        input_size=[pic_h, pic_w],
        precision=precision_label(objective.amp_dtype),
        stop_reason=run.stop_reason,
        iterations_run=run.iterations_run,
        survivors=run.survivors,
    )
    if sum(run.reseeded):
        notes.append(
            f"re-seeded {sum(run.reseeded)} stroke(s) that had shrunk to dots "
            f"(per seed: {', '.join(str(n) for n in run.reseeded)})"
        )
    # post-processing above ran in the optimisation frame; only now is a stretched sketch un-stretched
    shown = to_picture_frame(winner, pic_h, pic_w, s.framing)
    shown_candidates = to_picture_frame(run.strokes, pic_h, pic_w, s.framing)
    return SketchResult(
        strokes=shown,
        candidates=shown_candidates,
        index=index,
        target=target,
        mask=mask,
        saliency=sal,
        initial=initial,
        run=run,
        settings=summary,
        notes=notes,
        seconds=time.perf_counter() - t0,
        abstraction=ab_result,
        drawing_order=ordering,
        framing=s.framing,
        frame_strokes=winner,
        sketch_settings=s,
    )


# The settings a `SketchResult.settings` summary reports as they are; the rest of it is what the run used or
# found (stroke count placed, seed list, device, encoder, precision, stop reason, ...).
SUMMARY_FIELDS = (
    "preset",
    "iterations",
    "loss",
    "saliency",
    "background_removal",
    "num_augs",
    "aug_pool",
    "lr",
    "text",
    "optimize_width",
    "optimize_opacity",
    "optimize_color",
    "color_from_image",
    "pen_width",
    "framing",
    "seed_trial",
    "seed_survivors",
    "plateau",
    "plateau_window",
)


__all__ = [
    "sketch",
    "SketchResult",
    "SketchSettings",
    "post_process",
    "prepare_target",
    "to_picture_frame",
    "PipelineError",
    "EXAMPLE_IMAGE",
]
