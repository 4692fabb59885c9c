"""Optimize Sketch (the CLIP-loss loop) and the one-box CLIPasso Sketch node.

ComfyUI runs every node under ``torch.inference_mode()``; the optimiser needs autograd, so both
nodes leave inference mode, enable gradients and work on fresh copies of their inputs. Progress
goes to ComfyUI's progress bar with a preview of the leading candidate.

Cancel: ComfyUI's interrupt ends the whole prompt with ``InterruptProcessingException``, so a node
cannot return outputs after it. Both nodes therefore check the interrupt on every iteration, let the
engine stop cleanly at its best state, show that best sketch as the node's last preview image, free
the memory, and then re-raise the interruption: the run's outputs are discarded (nothing goes
downstream, nothing is saved), the preview is only to look at.
"""
from __future__ import annotations

import gc
from typing import List

import torch
from comfy_api.latest import io

from clipasso.images import FRAMINGS

from .common import (CATEGORY, ClipassoModelsType, NodeInputError, SketchStrokes, check_interrupted,
                     compute_device, free_memory, images_to_chw, models_dirs, picture_on_canvas,
                     strokes_or_error)
from .render_nodes import candidate_groups, render_to_comfy

PRESET_NAMES = ["fast", "paper"]
LOSS_CHOICES = ("clip", "trace", "clip+trace")  # clipasso.optimize.LOSS_MODES
PREVIEW_SIZE = 256


def _precision_name(dtype) -> str:
    if dtype is None:
        return "off"
    return "bf16" if dtype == torch.bfloat16 else "fp16"


class _Progress:
    """ComfyUI progress bar over several optimisation runs, with a preview of the leading sketch."""

    def __init__(self, total: int):
        import comfy.utils

        self.total = max(1, int(total))
        self.bar = comfy.utils.ProgressBar(self.total)
        self.offset = 0
        self.value = 0

    def show_best(self, strokes) -> None:
        """One last preview: the lowest-loss candidate of ``strokes`` (sent even after Cancel)."""
        import comfy.model_management as mm
        from clipasso.images import to_pil
        from clipasso.raster import render

        lead = int(torch.argmin(torch.nan_to_num(strokes.losses.float(), nan=float("inf"))))
        image = render(strokes.select([lead]).detach().cpu()).image[0]
        mm.interrupt_current_processing(False)  # the hook refuses to send while the flag is set
        try:
            self.bar.update_absolute(self.value, self.total, ("JPEG", to_pil(image.float()), PREVIEW_SIZE))
        finally:
            mm.interrupt_current_processing(True)

    def callback(self, iteration, losses, render):
        from clipasso.images import to_pil

        if cancel_requested():  # ComfyUI's progress hook would raise here; the engine stops on its own
            return
        self.value = min(self.total, self.offset + int(iteration))
        best = losses.get("best")
        lead = int(torch.argmin(torch.nan_to_num(best, nan=float("inf")))) if best is not None else 0
        preview = to_pil(render[lead].detach().float().cpu())
        self.bar.update_absolute(min(self.total, self.offset + int(iteration)), self.total,
                                 ("JPEG", preview, PREVIEW_SIZE))


def cancel_requested() -> bool:
    """True once the user pressed Cancel (ComfyUI's interrupt flag; reading it does not clear it)."""
    import comfy.model_management as mm

    return bool(mm.processing_interrupted())


def _stop_when_cancelled() -> bool:
    return cancel_requested()  # the engine then stops after this iteration, at its best state


def _discard_cancelled(progress: "_Progress", best) -> None:
    """After Cancel: show ``best`` as the last preview, then raise ComfyUI's interruption (the prompt ends
    with no outputs). Does nothing when Cancel was not pressed."""
    if not cancel_requested():
        return
    try:
        if best is not None and best.num_candidates:
            progress.show_best(best)
    except Exception:  # a preview must never hide the cancellation
        pass
    check_interrupted()  # clears the flag and raises InterruptProcessingException


def _picture_groups(strokes, pictures: int) -> List[List[int]]:
    """Which candidates belong to which target picture."""
    n = strokes.num_candidates
    if pictures == 1:
        return [list(range(n))]
    groups = candidate_groups(strokes)
    if len(groups) == pictures:
        return groups
    if n % pictures == 0:
        k = n // pictures
        return [list(range(i * k, (i + 1) * k)) for i in range(pictures)]
    raise NodeInputError(f"{n} candidates cannot be shared among {pictures} pictures; give the same picture "
                         "batch to Initialize Strokes and Optimize Sketch")


def _feature_inputs(with_canvas: bool = False):
    """Optional inputs of text guidance, styled strokes (and the working canvas) shared by both nodes."""
    items = [
        io.String.Input("text", default="", multiline=False, optional=True,
                        tooltip="Text guidance: a short description such as 'a cat, side view'. The sketch of the "
                                "picture is nudged toward it through the loss model's text tower. Empty: off."),
        io.Float.Input("text_weight", default=0.3, min=0.0, max=100.0, step=0.01, optional=True,
                       tooltip="Weight of the text term: 0.3 nudges the sketch toward the words; 1 and more let the words win "
                               "over the picture."),
        io.Boolean.Input("optimize_width", default=False, optional=True,
                         tooltip="Also optimise each stroke's width (lines of 1 to 8 canvas pixels)."),
        io.Boolean.Input("optimize_opacity", default=False, optional=True,
                         tooltip="Also optimise each stroke's opacity (0.05 to 1)."),
        io.Boolean.Input("color_from_image", default=False, optional=True,
                         tooltip="Colour each stroke like the picture under it (instead of black)."),
        io.Boolean.Input("optimize_color", default=False, optional=True,
                         tooltip="Also optimise each stroke's colour."),
        io.Float.Input("pen_width", default=0.0, min=0.0, max=100.0, step=0.1, optional=True,
                       tooltip="Draw every stroke with this line width in canvas pixels (3 = CLIPasso's pen), "
                               "whatever was optimised; 0 keeps each stroke's own width."),
    ]
    if with_canvas:
        items.append(io.Int.Input("canvas", default=224, min=64, max=1024, step=8, optional=True,
                                  tooltip="Working canvas side. 224 is CLIP's input; larger (e.g. 448) draws finer "
                                          "lines and is downsampled for the loss (the encoder's cost is unchanged; "
                                          "rendering 448 px adds about 14 ms per step on a CPU)."))
    return items


def _feature_settings(text="", text_weight=0.3, optimize_width=False, optimize_opacity=False,
                      color_from_image=False, optimize_color=False, pen_width=0.0) -> dict:
    """The optimiser settings of those inputs (defaults: the plain CLIPasso run)."""
    out = dict(optimize_width=bool(optimize_width), optimize_opacity=bool(optimize_opacity),
               color_from_image=bool(color_from_image), optimize_color=bool(optimize_color))
    if (text or "").strip():
        out.update(text=text.strip(), text_weight=float(text_weight))
    if pen_width is not None and float(pen_width) != 0:  # 0: off; anything else is checked by the engine
        out["pen_width"] = float(pen_width)
    return out


class OptimizeSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoOptimize",
            display_name="Optimize Sketch (CLIP loss)",
            category=CATEGORY,
            description="Move the strokes' control points by gradient descent so that CLIP features of the sketch "
                        "match those of the picture: ResNet layers keep the geometry, the embedding the meaning. "
                        "All candidates run as one batch. Shows a live preview. Cancel stops within one iteration and "
                        "discards the run: ComfyUI ends the whole prompt, so no strokes or images come out and "
                        "nothing downstream runs or is saved; the node's last preview shows the best sketch "
                        "reached, to look at only. To keep a result, set fewer iterations.",
            inputs=[
                ClipassoModelsType.Input("models", optional=True,
                                         tooltip="From Load CLIPasso Models; its loss encoder is used. Not needed "
                                                 "with loss 'trace'."),
                io.Image.Input("image", tooltip="Target picture(s), ideally the object on white; a batch of N "
                                                "pictures pairs with N x seeds candidates."),
                SketchStrokes.Input("strokes", tooltip="Starting strokes (Initialize Strokes, or Load SVG to refine)."),
                io.Combo.Input("preset", options=PRESET_NAMES, default="fast",
                               tooltip="fast: 500 iterations, 2 augmentations from a cached pool (CPU-friendly). "
                                       "paper: the original settings, 2000 iterations and 4 fresh augmentations."),
                io.Int.Input("iterations", default=0, min=0, max=20000,
                             tooltip="Optimisation steps; 0 uses the preset's number."),
                io.Float.Input("learning_rate", default=1.0, min=0.001, max=10.0, step=0.01,
                               tooltip="Adam step size in canvas pixels (CLIPasso: 1.0)."),
                io.Float.Input("geometric_weight", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Weight of the geometric term (intermediate encoder layers; CLIPasso: "
                                       "1.0 on ResNet layer2 and layer3)."),
                io.Float.Input("semantic_weight", default=0.1, min=0.0, max=100.0, step=0.01,
                               tooltip="Weight of the semantic term (final CLIP embedding; CLIPasso: 0.1)."),
                io.Int.Input("augmentations", default=-1, min=-1, max=16,
                             tooltip="Augmented views (random perspective + crop) per step and candidate; -1 uses "
                                     "the preset's number, 0 compares the clean view only."),
                io.Combo.Input("loss", options=list(LOSS_CHOICES), default="clip", optional=True,
                               tooltip="clip: the CLIPasso loss. trace: a weights-free image-space loss (blurred "
                                       "ink compared at several scales) that traces the picture's lines; needs no "
                                       "CLIP model. clip+trace: both added."),
                io.Float.Input("trace_weight", default=1.0, min=0.0, max=100.0, step=0.1, optional=True,
                               tooltip="Weight of the trace term when loss is clip+trace."),
                *_feature_inputs(),
            ],
            outputs=[
                SketchStrokes.Output("optimized", display_name="strokes",
                                     tooltip="Every candidate at its best state, with its loss (for Select Best)."),
                io.Image.Output("renders", display_name="images", tooltip="Every candidate drawn on white."),
            ],
        )

    @classmethod
    def execute(cls, models=None, image=None, strokes=None, preset="fast", iterations=0, learning_rate=1.0,
                geometric_weight=1.0, semantic_weight=0.1, augmentations=-1, loss="clip", trace_weight=1.0,
                **features):
        from clipasso.losses import default_layer_weights
        from clipasso.optimize import OptimizeConfig, optimize
        from clipasso.strokes import Strokes

        strokes = strokes_or_error(strokes)
        loss = loss or "clip"
        if loss not in LOSS_CHOICES:
            raise NodeInputError(f"loss must be one of {', '.join(LOSS_CHOICES)}; got {loss!r}")
        if models is None and loss != "trace":
            raise NodeInputError(f"loss {loss!r} needs a CLIP model: connect Load CLIPasso Models, or choose "
                                 "loss 'trace', which needs none")
        encoder = models.loss if models is not None and loss != "trace" else None
        overrides = dict(lr=float(learning_rate), loss=loss, trace_weight=float(trace_weight))
        overrides.update(_feature_settings(**features))
        if encoder is not None:
            overrides.update(semantic_weight=float(semantic_weight),
                             layer_weights={k: v * float(geometric_weight)
                                            for k, v in default_layer_weights(encoder).items()},
                             mixed_precision=_precision_name(models.autocast_dtype))
        if iterations > 0:
            overrides["iterations"] = int(iterations)
        if augmentations >= 0:
            overrides["num_augs"] = int(augmentations)
            if augmentations == 0:
                overrides["aug_pool"] = 0
        config = OptimizeConfig.from_preset(preset, **overrides).validate()

        def run_all(progress):
            with torch.inference_mode(False), torch.enable_grad():
                pictures = images_to_chw(image)
                groups = _picture_groups(strokes, len(pictures))
                start = strokes.detach()  # fresh, autograd-capable copies
                progress.total = max(1, config.iterations * len(groups))
                progress.bar.total = progress.total
                results = []
                for i, (pic, group) in enumerate(zip(pictures, groups)):
                    if cancel_requested():
                        break
                    progress.offset = i * config.iterations
                    target = picture_on_canvas(pic, start.height)
                    if start.height != start.width:
                        raise NodeInputError(f"the strokes' canvas is {start.height}x{start.width}; CLIPasso "
                                             "optimises on a square canvas")
                    run = optimize(start.select(group), target, encoder, config, callback=progress.callback,
                                   should_stop=_stop_when_cancelled,
                                   device=models.device if models is not None else compute_device())
                    results.append(run.strokes)
                return Strokes.concat(results).cpu() if results else None

        progress = _Progress(config.iterations)
        best = None
        try:
            best = run_all(progress)  # its frames (targets, encoder activations) are gone once it returns
            _discard_cancelled(progress, best)
            images, _ = render_to_comfy(best)
        except BaseException:
            best = None  # nothing of a cancelled or failed run stays referenced from this frame
            raise
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(best, images)


class CLIPassoSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from clipasso.models import DEFAULT_LOSS_MODEL, DEFAULT_SALIENCY_MODEL

        from .models_node import LOSS_MODELS, SALIENCY_MODELS, _options

        return io.Schema(
            node_id="CLIPassoSketch",
            display_name="CLIPasso Sketch",
            category=CATEGORY,
            description="The whole CLIPasso pipeline in one node: remove the background, find the salient parts, "
                        "place strokes, optimise every seed against CLIP and keep the best. Each picture of a batch "
                        "is sketched on its own. Cancel discards the run (no outputs, nothing saved); the last "
                        "preview shows the best sketch reached.",
            inputs=[
                io.Image.Input("image", tooltip="Picture(s) of an object; every picture of a batch gets a sketch."),
                io.Combo.Input("preset", options=PRESET_NAMES, default="fast",
                               tooltip="fast: CPU-friendly (500 iterations, best of 2). paper: the original settings "
                                       "(2000 iterations, best of 3, 4 augmentations)."),
                io.Int.Input("strokes", default=16, min=1, max=512,
                             tooltip="Number of strokes; fewer gives a more abstract sketch."),
                io.Int.Input("seeds", default=0, min=0, max=64,
                             tooltip="Candidates to optimise and pick the best from; 0 uses the preset's number."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1 - 64000, control_after_generate=True,
                             tooltip="First random seed (candidates use seed, seed+1000, ...)."),
                io.Int.Input("iterations", default=0, min=0, max=20000,
                             tooltip="Optimisation steps; 0 uses the preset's number."),
                io.Boolean.Input("remove_background", default=True,
                                 tooltip="Cut the object out with rembg's u2netp first (ships with the pack; a "
                                         "u2netp.onnx in models/clipasso wins)."),
                io.Combo.Input("loss_model", options=_options(LOSS_MODELS), default=DEFAULT_LOSS_MODEL,
                               tooltip="CLIP encoder of the loss (weights in models/clipasso)."),
                io.Combo.Input("saliency_model", options=_options(SALIENCY_MODELS), default=DEFAULT_SALIENCY_MODEL,
                               tooltip="CLIP ViT for the saliency map."),
                io.Boolean.Input("allow_download", default=True,
                                 tooltip="Download missing weights on first use (into models/clipasso for rembg, "
                                         "open_clip's cache for CLIP)."),
                *_feature_inputs(with_canvas=True),
                io.Combo.Input("framing", options=["preset", *FRAMINGS], default="preset", optional=True,
                               tooltip="How the picture goes onto the square canvas. stretch: the original's "
                                       "default (a non-square picture is stretched for the optimisation; the "
                                       "sketch comes back in the picture's shape). fix-scale: the original's "
                                       "fix_scale=1 (white square, 10 picture pixels a side). pad: white square, "
                                       "10/224 margin. preset: the preset's (paper stretch, fast pad)."),
            ],
            outputs=[
                SketchStrokes.Output("sketch", display_name="strokes", tooltip="The winning sketch of each picture."),
                io.Image.Output("sketch_image", display_name="image", tooltip="The sketch(es) drawn on white."),
                io.Float.Output("loss", display_name="loss", tooltip="Loss of the (first) winner; lower is better."),
            ],
        )

    @classmethod
    def execute(cls, image, preset="fast", strokes=16, seeds=0, seed=0, iterations=0, remove_background=True,
                loss_model="RN101", saliency_model="ViT-B-32", allow_download=True, canvas=224, framing="preset",
                **features):
        from clipasso.matting import remove_background as cut_out  # not the boolean input of the same name
        from clipasso.optimize import PRESETS
        from clipasso.pipeline import sketch
        from clipasso.strokes import Strokes

        dirs = models_dirs()
        total_its = int(iterations) or PRESETS[preset]["iterations"]
        progress = _Progress(total_its)

        def run_all():
            winners = []
            with torch.inference_mode(False), torch.enable_grad():
                pictures = images_to_chw(image)
                progress.total = progress.bar.total = max(1, total_its * len(pictures))
                for i, pic in enumerate(pictures):
                    if cancel_requested():
                        break
                    progress.offset = i * total_its
                    if remove_background:
                        # matting here, searching every models/clipasso folder: the engine then uses the
                        # picture's alpha as the object mask, as for any RGBA input
                        cut = cut_out(pic, model="u2netp", models_dir=dirs, allow_download=bool(allow_download))
                        if cut.found:
                            pic = torch.cat([cut.image, cut.mask[None]]).permute(1, 2, 0)  # RGBA [H,W,4]
                    result = sketch(pic, preset=preset, strokes=int(strokes), seeds=int(seeds) or None,
                                    iterations=int(iterations) or None, seed=int(seed),
                                    device=str(compute_device()), clip_model=loss_model,
                                    saliency_model=saliency_model, background_removal=False,
                                    models_dir=dirs, allow_download=bool(allow_download),
                                    callback=progress.callback, should_stop=_stop_when_cancelled,
                                    canvas=int(canvas), framing=None if framing in (None, "preset") else framing,
                                    **_feature_settings(**features))
                    winners.append(result.strokes)
                    del result
            return Strokes.concat(winners).cpu() if winners else None

        best = None
        try:
            best = run_all()
            _discard_cancelled(progress, best)
            rendered, _ = render_to_comfy(best)
        except BaseException:
            best = None
            raise
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(best, rendered, float(best.losses[0]))


NODES = [OptimizeSketch, CLIPassoSketch]
