"""Video: CLIPasso Sketch Video (`clipasso.video.sketch_video` over the frames of an IMAGE batch): the same
strokes in every frame, a whole sketch on the first frame, then each frame warm-started from the last."""

from __future__ import annotations

import gc
import math

import torch
from comfy_api.latest import io

from .common import (
    CATEGORY,
    CompileNotices,
    NodeInputError,
    SketchStrokes,
    chw_to_images,
    compute_device,
    free_memory,
    images_to_chw,
    masks_to_hw,
    models_dirs,
)
from .inputs import NODE_PRESET, node_settings
from .optimize import Progress, discard_cancelled, stop_when_cancelled
from .pipeline import sketch_inputs

DEFAULT_FPS = 24.0
# widget value of frame_iterations that means "the engine's default" (a tenth of the iterations), as
# iterations 0 means the preset's value on the other nodes
FRAME_ITERATIONS_UNSET = 0


def _video_option(name):
    from clipasso.settings import VideoSettings, option_of

    return option_of(VideoSettings, name)


def _help(name) -> str:
    text = _video_option(name).help.removeprefix("video: ")
    return text[0].upper() + text[1:] + "."


def video_inputs():
    """The `VideoSettings` fields a node offers (help and range from the settings), then fps."""
    from clipasso.settings import FLOW_METHODS, VideoSettings

    defaults = VideoSettings()
    iters, weight = _video_option("frame_iterations"), _video_option("temporal_weight")
    return [
        io.Int.Input(
            "frame_iterations",
            default=FRAME_ITERATIONS_UNSET,
            min=FRAME_ITERATIONS_UNSET,
            max=int(iters.high),
            tooltip=_help("frame_iterations").replace(" (default a tenth of the iterations)", "")
            + " 0: a tenth of the iterations.",
        ),
        io.Float.Input(
            "temporal_weight",
            default=float(defaults.temporal_weight),
            min=float(weight.low),
            max=float(weight.high),
            step=weight.step or 0.01,
            tooltip=_help("temporal_weight"),
        ),
        io.Combo.Input("flow", options=list(FLOW_METHODS), default=defaults.flow, tooltip=_help("flow")),
        io.Float.Input(
            "fps",
            default=DEFAULT_FPS,
            min=0.01,
            max=240.0,
            step=0.01,
            tooltip="Frames per second of the clip: passed on to the fps output (for Create Video) and used "
            "nowhere else. Set it to the source's rate (Get Video Components' fps).",
        ),
    ]


def video_node_settings(frame_iterations=FRAME_ITERATIONS_UNSET, temporal_weight=1.0, flow="tvl1"):
    """The validated `VideoSettings` of the node's widget values."""
    from clipasso.settings import SettingsError, VideoSettings

    iterations = (
        None if frame_iterations is None or int(frame_iterations) == FRAME_ITERATIONS_UNSET else frame_iterations
    )
    try:
        return VideoSettings.of(
            None,
            frame_iterations=None if iterations is None else int(iterations),
            temporal_weight=float(temporal_weight),
            flow=str(flow),
        )
    except SettingsError as exc:
        raise NodeInputError(str(exc)) from None


def clip_frames(frames):
    """IMAGE [B,H,W,C] -> B engine frames [3,H,W], refusing an empty batch and NaN or infinite values."""
    if isinstance(frames, torch.Tensor) and frames.numel() and not bool(torch.isfinite(frames).all()):
        bad = ~torch.isfinite(frames.reshape(frames.shape[0], -1) if frames.ndim == 4 else frames.reshape(1, -1))
        which = [int(i) for i in torch.nonzero(bad.any(-1)).flatten()]
        raise NodeInputError(
            f"'frames' contains {int(bad.sum())} NaN or infinite value(s) (frame(s) {', '.join(map(str, which[:8]))}"
            f"{', ...' if len(which) > 8 else ''}); fix the node that produced the frames before sketching them"
        )
    return images_to_chw(frames, "frames")


def clip_masks(mask, count: int, size):
    """MASK [1 or B,H,W] -> one engine mask per frame (None: no mask given)."""
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor) and mask.ndim == 3 and mask.shape[0] not in (1, count):
        raise NodeInputError(
            f"'mask' has {mask.shape[0]} masks for a clip of {count} frames; give one mask for every frame, or a "
            "single mask for all of them"
        )
    return masks_to_hw(mask, count, size, "mask")


def render_frames(strokes, size, framing: str) -> torch.Tensor:
    """Every candidate (frame) of ``strokes`` drawn on white at the input frames' ``size`` (H, W), lined up with
    the frames: a sketch of a padded square canvas is drawn at the square the frame was padded to, then
    cut back to the frame."""
    from clipasso.prepare.images import framing_margin, square_box
    from clipasso.render.raster import render

    h, w = int(size[0]), int(size[1])
    square = framing != "stretch" and strokes.height == strokes.width
    side, top, left = square_box(h, w, framing_margin(h, w, framing)) if square else (None, 0, 0)
    out = []
    with torch.inference_mode(False), torch.no_grad():
        for i in range(strokes.num_candidates):
            one = strokes.select([i]).cpu()
            if square:
                img = render(one, size=(side, side)).image[0, :, top : top + h, left : left + w]
            else:
                img = render(one, size=(h, w)).image[0]
            out.append(img)
    return chw_to_images(out)


class CLIPassoSketchVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoSketchVideo",
            display_name="CLIPasso Sketch Video",
            category=CATEGORY,
            description="Sketch a clip with the same strokes in every frame: the first frame gets a whole CLIPasso "
            "sketch, each next frame starts from the previous frame's strokes moved by the optical flow and "
            "refines them for frame_iterations steps, held near that start by the temporal term. Frames come "
            "as an IMAGE batch (Load Video -> Get Video Components). Without CLIP weights: loss 'trace' with "
            "saliency 'mask' or 'none'. Cancel discards the run (ComfyUI ends the prompt: no outputs).",
            inputs=[
                io.Image.Input("frames", tooltip="The clip's frames in order, all the same size (an IMAGE batch)."),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="The object's matte: one mask per frame, or one for every frame. Used instead of "
                    "background removal.",
                ),
                *sketch_inputs(),
                *video_inputs(),
            ],
            hidden=[io.Hidden.unique_id],  # the compile step's text on the node (CompileNotices)
            outputs=[
                io.Image.Output(
                    "sketch_frames",
                    display_name="sketch_frames",
                    tooltip="Each frame's sketch drawn on white at the frames' size, lined up with them.",
                ),
                SketchStrokes.Output(
                    "stroke_sequence",
                    display_name="strokes",
                    tooltip="The stroke sequence: one candidate per frame, in order, with the same strokes in "
                    "each (Save SVG with animate_frames writes it as one animated SVG).",
                ),
                io.Float.Output("clip_fps", display_name="fps", tooltip="The fps input, for Create Video."),
            ],
        )

    @classmethod
    def execute(
        cls,
        frames,
        mask=None,
        preset=NODE_PRESET,
        frame_iterations=FRAME_ITERATIONS_UNSET,
        temporal_weight=1.0,
        flow="tvl1",
        fps=DEFAULT_FPS,
        **widgets,
    ):
        from clipasso.errors import VideoError
        from clipasso.strokes import Strokes
        from clipasso.video import sketch_video, total_steps

        fps = float(fps)
        if not (math.isfinite(fps) and fps > 0):
            raise NodeInputError(f"'fps' must be a positive number of frames per second; got {fps!r}")
        settings = node_settings(preset, **widgets, models_dir=models_dirs(), device=str(compute_device()))
        video = video_node_settings(frame_iterations, temporal_weight, flow)
        pictures = clip_frames(frames)
        size = tuple(pictures[0].shape[-2:])
        masks = clip_masks(mask, len(pictures), size)
        progress = Progress(total_steps(settings, video, len(pictures)))

        def run_all():
            done = []
            with torch.inference_mode(False), torch.enable_grad():
                for result in sketch_video(
                    pictures,
                    settings,
                    video,
                    masks=masks,
                    callback=progress.callback,
                    should_stop=stop_when_cancelled,
                ):
                    if result.cancelled:
                        break
                    done.append((result.strokes.cpu(), float(result.loss)))
            if not done:
                return None
            seq = Strokes.concat([s for s, _ in done])
            return seq.replace(losses=torch.tensor([x for _, x in done]), pictures=tuple(range(len(done))))

        strokes = None
        try:
            with CompileNotices(cls):
                try:
                    strokes = run_all()
                except VideoError as exc:  # the engine's word on the clip (sizes, masks): no traceback needed
                    raise NodeInputError(str(exc)) from None
            discard_cancelled(progress, strokes.select([strokes.num_candidates - 1]) if strokes is not None else None)
            rendered = render_frames(strokes, size, settings.framing)
        except BaseException:
            strokes = None
            raise
        finally:
            gc.collect()
            free_memory()
        return io.NodeOutput(rendered, strokes, fps)


NODES = [CLIPassoSketchVideo]
