"""The optimize stage: Optimize Sketch (the CLIP-loss loop over all seeds), and what the one-box
CLIPasso Sketch node (`nodes.pipeline`) shares with it: progress with a live preview, and Cancel.

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

import torch
from comfy_api.latest import io

from .common import (
    CATEGORY,
    CompileNotices,
    ClipassoModelsType,
    SketchStrokes,
    check_interrupted,
    free_memory,
    images_to_chw,
    strokes_or_error,
)
from .inputs import (
    NODE_PRESET,
    SPEED_WIDGETS,
    loop_config,
    loop_inputs,
    preset_input,
    setting_input,
    vit_block_input,
)
from .output import render_to_comfy

PREVIEW_SIZE = 256


class Progress:
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
        from clipasso.prepare.images import to_pil
        from clipasso.render.raster import render

        lead = int(torch.argmin(torch.nan_to_num(strokes.losses.float(), nan=float("inf"))))
        image = render(strokes.select([lead]).detach().cpu()).image[0]
        mm.interrupt_current_processing(False)  # the hook refuses to send while the flag is set
        try:
            self.bar.update_absolute(self.value, self.total, ("JPEG", to_pil(image.float()), PREVIEW_SIZE))
        finally:
            mm.interrupt_current_processing(True)

    def callback(self, iteration, losses, render):
        from clipasso.prepare.images import to_pil

        if cancel_requested():  # ComfyUI's progress hook would raise here; the engine stops on its own
            return
        self.value = min(self.total, self.offset + int(iteration))
        best = losses.get("best")
        lead = int(torch.argmin(torch.nan_to_num(best, nan=float("inf")))) if best is not None else 0
        preview = to_pil(render[lead].detach().float().cpu())
        self.bar.update_absolute(
            min(self.total, self.offset + int(iteration)), self.total, ("JPEG", preview, PREVIEW_SIZE)
        )


def cancel_requested() -> bool:
    """True once the user pressed Cancel (ComfyUI's interrupt flag; reading it does not clear it)."""
    import comfy.model_management as mm

    return bool(mm.processing_interrupted())


def stop_when_cancelled() -> bool:
    return cancel_requested()  # the engine then stops after this iteration, at its best state


def discard_cancelled(progress: "Progress", best) -> None:
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
                ClipassoModelsType.Input(
                    "models",
                    optional=True,
                    tooltip="From Load CLIPasso Models; its loss encoder is used. Not needed with loss 'trace'.",
                ),
                io.Image.Input(
                    "image",
                    tooltip="Target picture(s), ideally the object on white; a batch of N "
                    "pictures pairs with N x seeds candidates.",
                ),
                SketchStrokes.Input("strokes", tooltip="Starting strokes (Initialize Strokes, or Load SVG to refine)."),
                preset_input(),
                setting_input("iterations"),
                setting_input("learning_rate"),
                setting_input("geometric_weight"),
                setting_input("semantic_weight"),
                setting_input("augmentations"),
                *loop_inputs(),
                *loop_inputs(SPEED_WIDGETS),
                setting_input("renderer", optional=True),  # after the older inputs: saved workflows keep their order
                vit_block_input(),  # scene mode's background loss (a ViT block); last, for the same reason
            ],
            hidden=[io.Hidden.unique_id],  # the compile step's text on the node (CompileNotices)
            outputs=[
                SketchStrokes.Output(
                    "optimized",
                    display_name="strokes",
                    tooltip="Every candidate at its best state, with its loss (for Select Best).",
                ),
                io.Image.Output("renders", display_name="images", tooltip="Every candidate drawn on white."),
            ],
        )

    @classmethod
    def execute(cls, models=None, image=None, strokes=None, preset=NODE_PRESET, **widgets):
        from clipasso.optimize import optimize_pictures

        strokes = strokes_or_error(strokes)
        encoder, device, config = loop_config(models, preset, **widgets)

        def run_all(progress):
            with torch.inference_mode(False), torch.enable_grad():
                pictures = images_to_chw(image)
                progress.total = progress.bar.total = max(1, config.iterations * len(pictures))

                def next_picture(i):
                    progress.offset = i * config.iterations

                return optimize_pictures(
                    strokes,
                    pictures,
                    encoder,
                    config,
                    callback=progress.callback,
                    should_stop=stop_when_cancelled,
                    device=device,
                    on_picture=next_picture,
                )

        progress = Progress(config.iterations)
        best = None
        try:
            with CompileNotices(cls):
                best = run_all(progress)  # its frames (targets, encoder activations) are gone once it returns
            discard_cancelled(progress, best)
            images, _ = render_to_comfy(best)
        except BaseException:
            best = None  # nothing of a cancelled or failed run stays referenced from this frame
            raise
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(best, images)


NODES = [OptimizeSketch]
