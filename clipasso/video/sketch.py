"""A clip sketched frame by frame with the same strokes: a key frame, then warm-started short passes.

1. The key frame (the clip's first, or the first after a resumed one) is a whole sketch as a still gets
   it (`clipasso.pipeline.sketch`: matting, saliency, start points, best of N, the preset's iterations,
   automatic abstraction and drawing order when asked, scene layers with ``scene``).
2. Every next frame starts from the previous frame's strokes moved by the optical flow between the two
   frames as the loss sees them (`clipasso.video.flow`), then runs ``frame_iterations`` steps (a tenth of
   the iterations by default, one candidate, at ``frame_lr``) of that frame's objective plus the temporal
   term (`clipasso.objective.temporal`: each control point near its flow-moved position, ``temporal_weight``).
   Keep-best applies as in every run, and the warm start itself is the first state it evaluates, so a
   frame never ends worse, under its objective, than where the flow put the strokes; and unless the pass
   lowers that loss by ``MIN_GAIN`` (0.2 %), the frame is the warm start (a tiny gain is not worth the
   wobble it would add to still strokes).
   Nothing is re-seeded or pruned after the key frame: the strokes keep their count, order, layer and
   identity, so stroke j of every frame is the same stroke moved, with one exception: a stroke the
   motion carried out of the picture (most of its control points off the canvas: a pan, an object
   leaving) is placed again (`replace_lost`), where the frame's saliency is high and no other stroke
   draws yet, so a long pan keeps every stroke at work.

Matting runs on every frame (when background removal is on; a given mask is used as it is), saliency on
the key frame, where the strokes are placed, and on a frame where a lost stroke is placed again. Every loss works per frame (the weights-free trace loss
included); in scene mode the frame passes use the whole-picture objective of the scene's joint pass, and
the strokes keep their layers.

`sketch_video` is a generator: it yields one `FrameResult` per frame as soon as that frame is done and
keeps only the previous frame, so memory is flat in the clip's length. A caller that stops iterating
(Ctrl+C, a cancelled ComfyUI run) has every frame yielded so far; ``resume`` starts again after them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import torch

from ..errors import VideoError
from ..settings import SketchSettings, VideoSettings
from ..strokes import Strokes

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """One frame of a sketched clip."""

    index: int  # position in the clip (the first frame given is ``first_index``)
    strokes: Strokes  # one candidate, in the picture frame (what the SVG and the rendered frame show)
    frame_strokes: Strokes  # the same in the optimisation frame (the square canvas the loss saw)
    loss: float  # the frame's picture loss (the sketch's objective on this frame, without the temporal term)
    temporal: float  # the temporal term at the frame's result (0 on the key frame)
    flow_shift: float  # mean length of the flow at the previous frame's control points, canvas pixels
    moved: float  # mean control-point movement from the previous frame, canvas pixels
    seconds: float
    key: bool  # the key frame (a whole sketch) or a warm-started pass
    iterations: int  # optimisation steps run for this frame
    cancelled: bool = False
    notes: List[str] = field(default_factory=list)
    sketch: Optional[object] = None  # the key frame's `clipasso.pipeline.SketchResult`
    target: Optional[torch.Tensor] = None  # [3,S,S] what the frame's loss compared against
    replaced: List[int] = field(default_factory=list)  # strokes placed again (carried off the canvas)

    def summary(self) -> dict:
        return dict(
            index=self.index,
            key=self.key,
            loss=self.loss,
            temporal=self.temporal,
            flow_shift=self.flow_shift,
            moved=self.moved,
            iterations=self.iterations,
            replaced=list(self.replaced),
            seconds=round(self.seconds, 3),
        )


def video_settings(settings: Optional[SketchSettings] = None, video: Optional[VideoSettings] = None, **overrides):
    """(`SketchSettings`, `VideoSettings`) validated, from either or both and keyword overrides of any of
    their fields (``preset`` picks the sketch's preset when ``settings`` is None)."""
    from dataclasses import fields

    video_fields = {f.name for f in fields(VideoSettings)}
    vo = {k: overrides.pop(k) for k in list(overrides) if k in video_fields}
    if settings is None:
        s = SketchSettings.from_preset(overrides.pop("preset", None) or "fast", **overrides)
    elif not isinstance(settings, SketchSettings):
        raise VideoError(f"settings must be a clipasso.settings.SketchSettings; got {type(settings).__name__}")
    else:
        s = settings.replace(**overrides)
    s.validate()
    v = VideoSettings.of(video, **{k: x for k, x in vo.items() if x is not None})
    return s, v


def total_steps(settings: SketchSettings, video: VideoSettings, frames: int, key: bool = True) -> int:
    """Optimisation steps of a clip of ``frames`` frames (for a progress bar): the key frame's, then each
    other frame's pass."""
    from ..scene import scene_steps

    key_steps = (scene_steps(settings) if settings.scene else int(settings.iterations)) if key else 0
    rest = frames - 1 if key else frames
    return key_steps + max(0, rest) * video.frame_steps(settings)


def _image_of(item):
    """A frame as given: an image, or a ``(index, seconds, image)`` item of `clipasso.video.io`."""
    if isinstance(item, tuple) and len(item) == 3:
        return item[2]
    return item


def _with_mask(image, mask):
    """The frame with ``mask`` ([H,W] 0..1) as its alpha channel, which is how a given matte reaches
    `clipasso.prepare.target` (alpha is the object's mask, the picture is composited on white)."""
    from ..prepare.images import as_rgb

    rgb = as_rgb(image)
    m = torch.as_tensor(mask, dtype=torch.float32).detach().cpu()
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise VideoError(f"a frame's mask must be [H,W]; got {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise VideoError("a frame's mask contains NaN or infinite values")
    if tuple(m.shape) != tuple(rgb.shape[-2:]):
        m = torch.nn.functional.interpolate(m[None, None], size=tuple(rgb.shape[-2:]), mode="bilinear")[0, 0]
    return torch.cat([rgb.cpu(), m.clamp(0, 1)[None]]).permute(1, 2, 0).numpy()


def from_picture_frame(strokes: Strokes, canvas: int) -> Strokes:
    """Strokes in a picture frame (`clipasso.prepare.target.to_picture_frame`) back on the square canvas."""
    h, w = strokes.canvas
    if (h, w) == (canvas, canvas):
        return strokes
    return strokes.replace(
        points=strokes.points * strokes.points.new_tensor([canvas / w, canvas / h]), canvas=(canvas, canvas)
    )


class _FrameObjective:
    """What every warm-started frame is optimised with: the optimiser settings and the encoder of the
    sketch's objective (scene mode: the joint pass's, on the whole picture)."""

    def __init__(self, s: SketchSettings, v: VideoSettings, device, layers=None):
        from ..models import loss_encoder

        ls = s
        if s.scene:
            from ..scene import layer_settings

            ls = layer_settings(s, "foreground" if (layers is None or "foreground" in layers) else "background")
        base = ls.optimize_config()
        self.config = base.replace(
            iterations=v.frame_steps(s),
            lr=v.frame_learning_rate(s),
            reseed_interval=0,
            seed_trial=0.0,
            plateau=0.0,
        )
        self.device = device
        self.weight = float(v.temporal_weight)
        self.encoder = None
        if self.config.uses_clip:
            self.encoder = loss_encoder(ls, device)

    def build(self, target: torch.Tensor):
        """The frame's objective without the temporal term (`with_anchor` adds it)."""
        from ..objective import Objective

        return Objective.build(self.config, self.encoder, target, self.device)

    def with_anchor(self, objective, anchor: torch.Tensor):
        """``objective`` plus the temporal term held at ``anchor`` (its terms shared, not built again)."""
        if self.weight == 0:
            return objective
        return objective.with_context(anchor=anchor, temporal_weight=self.weight)


LOST_SHARE = 0.5  # a stroke with more than this share of its curve off the canvas is placed again
FREE_RADIUS = 7  # pixels around the other strokes' ink where a placed-again stroke does not start
MIN_GAIN = 0.002  # a frame's pass must lower its loss by this share, else the warm start is the frame
RETRY_FRAMES = 4  # a lost stroke whose placing again did not pay is tried again this many frames later
PLACE_TRIES = 4  # placements drawn for the lost strokes; the frame's loss picks one (or none)


def _off_canvas(strokes: Strokes, samples: int = 9) -> torch.Tensor:
    """[S] share of each stroke's drawn curve off the canvas (one-candidate ``strokes``): measured on points
    along the curve, not on the control points, whose handles may lie off the canvas while the curve
    they bend is inside."""
    from ..render.raster import curve_samples

    h, w = strokes.canvas
    curve = curve_samples(strokes.points[:1].float(), samples)[0].flatten(1, 2)  # [S, k * samples, 2]
    outside = (curve[..., 0] < 0) | (curve[..., 0] > w) | (curve[..., 1] < 0) | (curve[..., 1] > h)
    return outside.float().mean(-1)


def lost_strokes(strokes: Strokes, before: Optional[Strokes] = None) -> List[int]:
    """Indices of the strokes of one-candidate ``strokes`` with most of their curve off the canvas; with
    ``before`` (the same strokes a frame earlier) only those the motion carried off: a stroke that was
    already off the canvas (one the key frame's optimisation pushed out) stays as it is."""
    lost = _off_canvas(strokes) > LOST_SHARE
    if before is not None:
        lost = lost & ~(_off_canvas(before) > LOST_SHARE)
    return [int(i) for i in torch.nonzero(lost).flatten()]


def replace_lost(
    strokes: Strokes,
    target,
    mask,
    settings: SketchSettings,
    device,
    seed: int,
    before: Optional[Strokes] = None,
    objective=None,
    tries: int = PLACE_TRIES,
    exclude=(),
):
    """(``strokes`` with its `lost_strokes` placed again, the indices placed again). The lost strokes start
    as CLIPasso places strokes (`clipasso.place.init.initialize_strokes`: the settings' saliency method on
    this frame, times XDoG edges when ``use_edges``) but only where none of the kept strokes draws (their
    ink grown by ``FREE_RADIUS``); ``tries`` placements are drawn and, with an ``objective`` (the frame's),
    the one with the lowest loss is kept (else the first). A placed-again stroke keeps its index, width,
    colour and layer. Whether placing them again pays is `sketch_video`'s call: a fresh stroke needs its
    frame's pass to beat a half-visible one, so it compares after the pass."""
    lost = [i for i in lost_strokes(strokes, before) if i not in set(exclude)]
    if not lost:
        return strokes, []
    from ..place.init import initialize_strokes
    from ..place.saliency import saliency_for_settings
    from ..render.raster import rasterize

    h, w = strokes.canvas
    keep = [i for i in range(strokes.num_strokes) if i not in lost]
    free = torch.ones(h, w)
    if keep:
        with torch.no_grad():
            img = rasterize(
                strokes.points[:, keep].float(),
                strokes.widths[:, keep].float(),
                strokes.colors[:, keep].float(),
                h,
                w,
                (1.0, 1.0, 1.0),
                "torch",
            )[0][0]
        ink = (1 - img.mean(0)).clamp(0, 1)[None, None]
        grown = torch.nn.functional.max_pool2d(ink, 2 * FREE_RADIUS + 1, stride=1, padding=FREE_RADIUS)[0, 0]
        free = (1 - grown).clamp(0, 1).cpu()
    sal = saliency_for_settings(target, mask, settings, device)
    region = free if mask is None else free * mask.float().cpu()
    if not float(region.max()) > 0:
        region = torch.ones(h, w) if mask is None else mask.float().cpu()
    sampling = (sal.float().cpu() if sal is not None else torch.ones(h, w)) * region
    if not float(sampling.max()) > 0:
        sampling = region
    edges = None
    if settings.use_edges:  # with saliency "none" too: a stroke placed again goes where the frame has lines
        from ..prepare.xdog import xdog_edges

        edges = xdog_edges(target)
    import warnings

    n = max(1, int(tries))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = initialize_strokes(
            (h, w),
            len(lost),
            [int(seed) + k for k in range(n)],
            saliency=sampling,
            edges=edges,
            mask=None,
            settings=settings,
        )
    idx = torch.tensor(lost)
    points = strokes.points.detach().expand(n, -1, -1, -1).clone()
    points[:, idx] = fresh.points.to(points)
    best = 0
    if objective is not None and n > 1:
        options = Strokes(
            points, strokes.widths.expand(n, -1).clone(), strokes.colors.expand(n, -1, -1).clone(), strokes.canvas
        )
        best = int(torch.argmin(objective.evaluate(options)))
    return strokes.replace(points=points[best : best + 1]), lost


def _loss_parts(objective, strokes: Strokes) -> Tuple[float, float]:
    """(picture loss, temporal term) of one-candidate ``strokes`` under ``objective``."""
    with torch.no_grad():
        pts = strokes.points.detach().to(objective.device, torch.float32)
        parts = objective.eval_loss(objective.draw(strokes), pts if objective.needs_points else None)
    total = float(parts["total"][0])
    temporal = float(parts["temporal"][0]) if "temporal" in parts else 0.0
    return total - temporal, temporal


def _frame_pass(frame_objective, picture_objective, warm: Strokes, free: List[int], target, seed: int, hooks: dict):
    """(run, the frame's strokes, the objective with its temporal term) of one frame's pass from ``warm``;
    the strokes ``free`` (placed again) are not held by the temporal term. Unless the pass lowers the loss
    by ``MIN_GAIN``, the frame's strokes are ``warm`` itself."""
    from ..optimize import optimize

    anchor = warm.points.clone()
    anchor[:, free] = float("nan")
    objective = frame_objective.with_anchor(picture_objective, anchor)
    run = optimize(warm, target, objective, frame_objective.config, seeds=[seed], **hooks)
    out = run.strokes.replace(losses=None, iterations=None)
    start_loss = float(run.history[0][0])  # iteration 0 is the warm start itself
    if not float(run.strokes.losses[0]) < start_loss - MIN_GAIN * abs(start_loss):
        out = warm.replace(losses=None, iterations=None)  # a gain this small is not worth a stroke's wobble
    return run, out, objective


def sketch_video(
    frames: Iterable,
    settings: Optional[SketchSettings] = None,
    video: Optional[VideoSettings] = None,
    *,
    masks: Optional[Iterable] = None,
    resume: Optional[Tuple[object, Strokes]] = None,
    first_index: int = 0,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    keep_targets: bool = False,
    **overrides,
) -> Iterator[FrameResult]:
    """Sketch the frames of a clip with the same strokes (see the module docstring); yields a `FrameResult`
    per frame, in order, as each is done.

    frames: images (paths, PIL, arrays, tensors) or `clipasso.video.io` items ``(index, seconds, image)``.
    settings / video / overrides: as `video_settings` (the sketch's preset defaults to "fast").
    masks: one mask ``[H,W]`` per frame (the object's matte, used instead of background removal).
    resume: ``(previous frame's image, its strokes in the picture frame)``: no key frame, the first frame
      given is warm-started from those strokes (how a stopped clip goes on; ``first_index`` numbers it).
    callback(step, losses, render): progress over the whole clip, ``step`` counting every frame's steps
      (`total_steps`); should_stop(): checked every step and between frames (True ends the clip after the
      frames done; an exception it raises propagates).
    keep_targets: put each frame's target in its result (for previews; off keeps memory flat).
    """
    from ..device import pick_device
    from ..pipeline import sketch
    from ..prepare.target import prepare_picture, to_picture_frame
    from .flow import estimate_flow, move_points

    s, v = video_settings(settings, video, **overrides)
    dev = pick_device(s.device)
    canvas = int(s.canvas)
    mask_iter = iter(masks) if masks is not None else None
    steps = [0]

    def step_callback(it, losses, render):
        if callback is not None:
            callback(steps[0] + it, losses, render)

    def stopped() -> bool:
        return should_stop is not None and bool(should_stop())

    def frame_image(item, index):
        """The frame's image, with its mask (the next of ``masks``) as alpha when masks are given."""
        image = _image_of(item)
        if mask_iter is None:
            return image
        try:
            return _with_mask(image, next(mask_iter))
        except StopIteration:
            raise VideoError(
                f"there are fewer masks than frames (none left for frame {index}); give one mask per frame"
            ) from None

    prev_target = prev_strokes = size = None
    dead: set = set()  # strokes off the canvas where the clip starts: the key sketch put them there, they stay
    cooling: dict = {}  # stroke -> the frame from which placing it again may be tried again
    frame_objective = None
    seed = int(s.seed_list()[0])
    if resume is not None:
        prev_image, prev_shown = resume
        if not isinstance(prev_shown, Strokes) or prev_shown.num_candidates != 1:
            raise VideoError("resume takes (the previous frame's image, its one-candidate Strokes)")
        notes: List[str] = []
        if mask_iter is not None:
            raise VideoError("resume with masks: give the masks of the frames still to sketch only, without resume")
        prev_target, _mask, size = prepare_picture(
            prev_image, s.prepare, s.models_dir, s.allow_download, notes, keep_background=bool(s.scene)
        )
        prev_strokes = from_picture_frame(prev_shown, canvas)
        dead = set(lost_strokes(prev_strokes))
        frame_objective = _FrameObjective(s, v, dev, prev_strokes.layer_names if prev_strokes.layers else None)

    index = int(first_index) - 1
    count = 0
    for item in frames:
        index += 1
        count += 1
        if stopped():
            return
        t0 = time.perf_counter()
        notes = []
        if prev_strokes is None:  # the key frame: a whole sketch
            result = sketch(frame_image(item, index), s, callback=step_callback, should_stop=should_stop)
            steps[0] += total_steps(s, v, 1)
            size = tuple(result.settings["input_size"])
            prev_strokes = result.frame_strokes.replace(losses=None, iterations=None)
            dead = set(lost_strokes(prev_strokes))
            prev_target = result.target
            seed = result.seed
            frame_objective = _FrameObjective(s, v, dev, prev_strokes.layer_names if prev_strokes.layers else None)
            loss = float(frame_objective.build(prev_target).evaluate(prev_strokes)[0])
            cancelled = bool(result.run.cancelled)
            yield FrameResult(
                index,
                result.strokes.replace(losses=None, iterations=None),
                prev_strokes,
                loss,
                0.0,
                0.0,
                0.0,
                time.perf_counter() - t0,
                True,
                int(result.run.iterations_run),
                cancelled,
                list(result.notes),
                result,
                prev_target if keep_targets else None,
            )
            if cancelled:
                return
            continue

        target, mask, fsize = prepare_picture(
            frame_image(item, index), s.prepare, s.models_dir, s.allow_download, notes, keep_background=bool(s.scene)
        )
        if tuple(fsize) != tuple(size):
            raise VideoError(
                f"frame {index} is {fsize[1]}x{fsize[0]} but the clip's frames are {size[1]}x{size[0]}; every "
                "frame of a clip must have the same size (resize them to one size first)"
            )
        flow = estimate_flow(prev_target, target, v.flow)
        moved_by_flow = move_points(prev_strokes, flow, prev_target)
        picture_objective = frame_objective.build(target)  # built once: the CLIP term's target features
        shift = float((moved_by_flow.points - prev_strokes.points).norm(dim=-1).mean())
        fo, cb = frame_objective, dict(callback=step_callback, should_stop=should_stop)
        placed, replaced = replace_lost(
            moved_by_flow,
            target,
            None if s.scene else mask,
            s,
            dev,
            seed + index,
            objective=picture_objective,
            exclude=dead | {i for i, k in cooling.items() if k > index},
        )

        run, out, objective = _frame_pass(fo, picture_objective, placed, replaced, target, seed + index, cb)
        if replaced and not run.cancelled:
            # placed again only if, after the pass, that beats leaving the strokes where the motion put them
            left = float(picture_objective.evaluate(moved_by_flow)[0])
            if not float(objective.evaluate(out)[0]) < left:
                cooling.update({i: index + RETRY_FRAMES for i in replaced})
                replaced = []
                run, out, objective = _frame_pass(fo, picture_objective, moved_by_flow, [], target, seed + index, cb)
        if replaced:
            notes.append(
                f"frame {index}: placed {len(replaced)} stroke(s) again that the motion carried off the canvas"
            )
        steps[0] += frame_objective.config.iterations
        if run.cancelled:
            return  # a frame cut short is not a frame: the frames before it are the clip so far
        loss, temporal = _loss_parts(objective, out)
        kept = [i for i in range(out.num_strokes) if i not in replaced]
        moved = float((out.points[:, kept] - prev_strokes.points[:, kept]).norm(dim=-1).mean()) if kept else 0.0
        shown = to_picture_frame(out, size[0], size[1], s.framing)
        yield FrameResult(
            index,
            shown,
            out,
            loss,
            temporal,
            shift,
            moved,
            time.perf_counter() - t0,
            False,
            int(run.iterations_run),
            False,
            notes,
            None,
            target if keep_targets else None,
            replaced,
        )
        prev_strokes, prev_target = out, target
    if count == 0:
        raise VideoError("the clip has no frames: there is nothing to sketch; check the video file or the frame folder")


__all__ = [
    "FrameResult",
    "sketch_video",
    "video_settings",
    "total_steps",
    "from_picture_frame",
    "lost_strokes",
    "replace_lost",
]
