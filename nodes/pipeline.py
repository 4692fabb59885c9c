"""The whole pipeline in one node: CLIPasso Sketch (`clipasso.pipeline.sketch` for every picture of an IMAGE
batch) and CLIPasso Batch (`clipasso.batch.sketch_many` over a folder of picture files, with its manifest
and resume)."""

from __future__ import annotations

import gc

import torch
from comfy_api.latest import io, ui

from .common import (
    CATEGORY,
    CompileNotices,
    NodeInputError,
    SketchStrokes,
    compute_device,
    free_memory,
    images_to_chw,
    models_dirs,
    output_path,
    picture_path,
)
from .inputs import LOOP_WIDGETS, NODE_PRESET, SPEED_WIDGETS, loop_inputs, node_settings, preset_input, setting_input
from .optimize import Progress, cancel_requested, discard_cancelled, stop_when_cancelled
from .output import render_to_comfy

# the one-box node's optional inputs after its required ones, in the order they were added (older first, so
# saved workflows keep their values): the features, then the canvas and framing, then the loss and where
# strokes start (which together make a run that needs no CLIP weights: loss trace, saliency mask)
ONE_BOX_WIDGETS = (
    tuple(n for n in LOOP_WIDGETS if n not in ("loss", "trace_weight"))
    + ("canvas", "framing")
    + ("loss", "trace_weight", "saliency")
    + SPEED_WIDGETS
)


def sketch_inputs():
    """The settings inputs of the whole pipeline, shared by CLIPasso Sketch and CLIPasso Batch (in the
    order saved workflows keep)."""
    from .models import LOSS_MODELS, SALIENCY_MODELS, model_options

    return [
        preset_input(),
        setting_input("strokes"),
        setting_input("seeds"),
        setting_input("seed", control_after_generate=True),
        setting_input("iterations"),
        setting_input("remove_background"),
        setting_input("loss_model", options=model_options(LOSS_MODELS)),
        setting_input("saliency_model", options=model_options(SALIENCY_MODELS)),
        setting_input("allow_download"),
        *loop_inputs(ONE_BOX_WIDGETS),
    ]


def scene_inputs():
    """Scene mode (`clipasso.scene`): the whole picture in a background and a foreground layer. Last on both
    nodes and off by default, so saved workflows run as before."""
    from clipasso.settings import SCENE_FIDELITIES, SCENE_VIT_BLOCKS

    return [
        setting_input("scene", optional=True),
        setting_input("background_strokes", optional=True),
        setting_input(
            "scene_fidelity",
            optional=True,
            options=[*SCENE_FIDELITIES, *(str(i) for i in range(SCENE_VIT_BLOCKS))],
        ),
    ]


def run_steps(settings) -> int:
    """Optimisation steps of one picture, as the engine's progress callback counts them."""
    if settings.scene:
        from clipasso.scene import scene_steps

        return scene_steps(settings)
    return int(settings.iterations)


class CLIPassoSketch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoSketch",
            display_name="CLIPasso Sketch",
            category=CATEGORY,
            description="The whole CLIPasso pipeline in one node: remove the background, find the salient parts, "
            "place strokes, optimise every seed against CLIP and keep the best. Each picture of a batch "
            "is sketched on its own. Without CLIP weights: loss 'trace' with saliency 'mask' (or "
            "'none') needs no model but the bundled u2netp. With scene on, the whole picture is sketched in "
            "two layers (the object, and the background with the object's hole inpainted) and the strokes "
            "carry their layer (Save SVG writes one group per layer). Cancel discards the run (no outputs, "
            "nothing saved); the last preview shows the best sketch reached.",
            inputs=[
                io.Image.Input("image", tooltip="Picture(s) of an object; every picture of a batch gets a sketch."),
                *sketch_inputs(),
                setting_input("renderer", optional=True),  # after the older inputs: saved workflows keep their order
                *scene_inputs(),  # last, for the same reason
            ],
            hidden=[io.Hidden.unique_id],  # the compile step's text on the node (CompileNotices)
            outputs=[
                SketchStrokes.Output("sketch", display_name="strokes", tooltip="The winning sketch of each picture."),
                io.Image.Output("sketch_image", display_name="image", tooltip="The sketch(es) drawn on white."),
                io.Float.Output(
                    "winner_loss", display_name="loss", tooltip="Loss of the (first) winner; lower is better."
                ),
            ],
        )

    @classmethod
    def execute(cls, image, preset=NODE_PRESET, **widgets):
        from clipasso.pipeline import sketch
        from clipasso.strokes import Strokes

        settings = node_settings(preset, **widgets, models_dir=models_dirs(), device=str(compute_device()))
        total_its = run_steps(settings)  # a scene runs each layer, then the joint pass
        progress = Progress(total_its)

        def run_all():
            winners = []
            with torch.inference_mode(False), torch.enable_grad():
                pictures = images_to_chw(image)
                progress.total = progress.bar.total = max(1, total_its * len(pictures))
                for i, pic in enumerate(pictures):
                    if cancel_requested():
                        break
                    progress.offset = i * total_its
                    result = sketch(pic, settings, callback=progress.callback, should_stop=stop_when_cancelled)
                    winners.append(result.strokes)
                    del result
            return Strokes.concat(winners).cpu() if winners else None

        best = None
        try:
            with CompileNotices(cls):
                best = run_all()
            discard_cancelled(progress, best)
            rendered, _ = render_to_comfy(best)
        except BaseException:
            best = None
            raise
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(best, rendered, float(best.losses[0]))


class CLIPassoBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoBatch",
            display_name="CLIPasso Batch (folder)",
            category=CATEGORY,
            description="Sketch every picture of a folder, as `clipasso batch` does: each becomes "
            "<output folder>/<its path in the folder>.svg (and .png), with one line per picture in "
            "manifest.jsonl. Pictures already sketched with the same settings are skipped, so "
            "queueing the node again resumes; a broken picture is recorded and the batch goes on. "
            "The progress bar counts pictures. Cancel stops after the current picture's iteration.",
            is_output_node=True,
            inputs=[
                io.String.Input(
                    "folder",
                    default="",
                    tooltip="A folder of pictures inside ComfyUI's input folder "
                    "(e.g. 'photos'). Other paths are refused unless the "
                    "server runs with CLIPASSO_ALLOW_ANY_PATH=1.",
                ),
                io.Boolean.Input("recursive", default=False, tooltip="Also sketch the pictures of sub-folders."),
                io.String.Input(
                    "output_folder",
                    default="clipasso/batch",
                    tooltip="Where the sketches and manifest.jsonl go, inside ComfyUI's output folder.",
                ),
                io.Boolean.Input("png", default=True, tooltip="Also write a PNG of every sketch."),
                io.Boolean.Input("force", default=False, tooltip="Redo pictures the manifest says are done."),
                *sketch_inputs(),
                *scene_inputs(),  # last: saved workflows keep their widget order
            ],
            outputs=[
                io.String.Output(
                    "report",
                    display_name="report",
                    tooltip="What happened, as JSON: counts, the manifest's path, the failed pictures.",
                ),
                io.Int.Output("sketched", display_name="sketched", tooltip="Pictures sketched by this run."),
            ],
        )

    @classmethod
    def execute(
        cls,
        folder="",
        recursive=False,
        output_folder="clipasso/batch",
        png=True,
        force=False,
        preset=NODE_PRESET,
        **widgets,
    ):
        import json

        import comfy.utils
        import folder_paths
        from clipasso.batch import BatchError, collect_inputs, sketch_many

        settings = node_settings(preset, **widgets, models_dir=models_dirs(), device=str(compute_device()))
        where = (folder or "").strip()
        if not where:
            raise NodeInputError(
                "'folder' is empty: name a folder of pictures inside ComfyUI's input folder "
                f"({folder_paths.get_input_directory()}), e.g. 'photos'"
            )
        # inside the input folder only (CLIPASSO_ALLOW_ANY_PATH=1 lifts it): '..', absolute paths and
        # symlinks that leave it are refused, and so is every picture found that resolves elsewhere
        source = picture_path(where, "'folder'")
        target = output_path((output_folder or "").strip() or "clipasso/batch", "'output_folder'")
        try:
            items = collect_inputs([source], recursive=bool(recursive))
        except BatchError as exc:
            raise NodeInputError(str(exc)) from None
        for item in items:
            picture_path(str(item.path), "the picture", shown=f"{where}/{item.name}")
        total = len(items)
        bar = comfy.utils.ProgressBar(total)
        with torch.inference_mode(False), torch.enable_grad():
            try:
                result = sketch_many(
                    [source],
                    target,
                    settings,
                    png=bool(png),
                    force=bool(force),
                    recursive=bool(recursive),
                    should_stop=stop_when_cancelled,
                    on_item=lambda done, _total, line: bar.update_absolute(done, total),
                )
            finally:
                gc.collect()
                free_memory()
        if cancel_requested():  # what was done is on disk and in the manifest; the prompt ends as cancelled
            from .common import check_interrupted

            check_interrupted()
        report = {
            "pictures": len(result.lines),
            "sketched": result.count("ok"),
            "skipped": result.count("skipped"),
            "failed": result.failed,
            "seconds": round(result.seconds, 1),
            "manifest": str(result.manifest),
            "errors": {line["name"]: line["error"] for line in result.lines if line["status"] == "error"},
        }
        text = json.dumps(report, indent=1)
        return io.NodeOutput(text, result.count("ok"), ui=ui.PreviewText(result.summary()))


NODES = [CLIPassoSketch, CLIPassoBatch]
