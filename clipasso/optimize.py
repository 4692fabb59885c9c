"""The CLIPasso optimisation loop: Adam on stroke control points, all candidates in one batch.

Each iteration renders every candidate (seed) at once, computes the CLIP loss over 1 clean + A
augmented views per candidate in one forward pass and one backward pass, and steps Adam on the
``[B, S, P, 2]`` points tensor. Candidates never mix: each has its own augmentation generator,
its loss is summed (not averaged) into the objective, and Adam works per element, so a batch of
seeds gives the same strokes as running the seeds one by one.

Every ``eval_interval`` iterations (and at the very end) the clean-view loss of the *current*
state is measured and, if it improved, that same state is kept as the candidate's best (the
original saved the post-step points under the pre-step loss). The result holds the best state per
candidate with its loss and iteration.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .losses import DEFAULT_TRACE_SIGMAS, TRACE_REFERENCES, CLIPassoLoss, CombinedLoss, TraceLoss
from .strokes import Strokes

# What each preset sets; pipeline-level keys (model, strokes, seeds) are used by `pipeline.sketch`.
PRESETS: Dict[str, Dict] = {
    # The original defaults (run_object_sketching.py): RN101, 4 fresh augmentations per iteration,
    # 2000 iterations, 16 strokes, best of 3 seeds, eval every 10 iterations; a non-square picture is
    # stretched onto the square canvas (its fix_scale=0; clipasso.images.FRAMINGS).
    "paper": dict(clip_model="RN101", strokes=16, seeds=3, iterations=2000, num_augs=4, aug_pool=0,
                  eval_interval=10, framing="stretch"),
    # CPU-friendly (bench/sketch.py, results in bench/results/sketch_cpu.json): same loss and
    # encoder, but 2 augmented views per step drawn from a fixed pool of 16 whose target features
    # are computed once (no target forward passes in the loop), 500 iterations, best of 2.
    # 2-core CPU, RN101: 1.35 s/it -> 11 min, against 4.4 s/it x 2000 -> 2.5 h for paper (13x).
    # Loss reached (tiny test encoder, two runs): 13-17% above paper's after 2000 its, 1-3% above
    # paper's own value at 500 its (65% vs 70% reduction from the start). 300 its was clearly
    # worse; 1000 its, 3 seeds, 4 pooled views or fresh views moved it by less than the run-to-run
    # spread (about 5%). Framing "pad" (a white square, never stretched): on three non-square photos
    # (trace loss, 100 its, 2 seeds; bench/framing.py, bench/results/framing_cpu.json) the sketch's edge F
    # in the photo's frame was 0.817 padded, 0.811 fix-scale, 0.772 stretched and mapped back.
    "fast": dict(clip_model="RN101", strokes=16, seeds=2, iterations=500, num_augs=2, aug_pool=16,
                 eval_interval=10, framing="pad"),
}


LOSS_MODES = ("clip", "trace", "clip+trace")
AUTO_RESEED_INTERVAL = 50


class OptimizeError(ValueError):
    """Settings or inputs the optimiser cannot work with."""


@dataclass(frozen=True)
class OptimizeConfig:
    iterations: int = 2000
    lr: float = 1.0
    num_augs: int = 4
    aug_pool: int = 0
    pool_seed: int = 0
    eval_interval: int = 10
    callback_interval: int = 10
    layer_weights: Optional[Dict[str, float]] = None  # None: layer2 + layer3 (ResNet)
    semantic_weight: float = 0.1
    # text guidance (clipasso.text): + text_weight * (1 - cos(sketch embedding, embedding of `text`))
    text: Optional[str] = None
    text_weight: float = 0.3  # bench/text_guidance.py: 0.1 left sketches unchanged, 1+ lets the words win
    # styled strokes (clipasso.style): optimise per-stroke width / opacity / colour within bounds
    optimize_width: bool = False
    optimize_opacity: bool = False
    optimize_color: bool = False
    color_from_image: bool = False   # start each stroke with the picture's colour under it
    width_range: tuple = (0.5, 4.0)  # half-widths in canvas px (lines of 1 to 8 px)
    min_opacity: float = 0.05
    width_lr: float = 0.1
    opacity_lr: float = 0.05
    color_lr: float = 0.02
    pen_width: Optional[float] = None  # full line width (canvas px) of every output stroke
    distortion: float = 0.5
    crop_scale: float = 0.8
    distance: str = "l2"
    mixed_precision: str = "auto"  # "auto" (fp16 on CUDA, fp32 on CPU; see _amp_dtype), "off", "bf16", "fp16"
    background: tuple = (1.0, 1.0, 1.0)
    # "clip": the CLIPasso loss; "trace": the weights-free image-space loss alone (no encoder needed);
    # "clip+trace": clip + trace_weight * trace. See `clipasso.losses.TraceLoss`.
    loss: str = "clip"
    trace_weight: float = 1.0
    trace_sigmas: tuple = DEFAULT_TRACE_SIGMAS
    trace_reference: str = "edges"  # trace the target's XDoG lines, or "image": its grey levels
    # Re-seeding collapsed strokes: every `reseed_interval` steps (during the first `reseed_until`
    # of the run) a visible stroke whose control polygon is shorter than `reseed_min_length` px (at
    # 224, scaled with the canvas) -- a dot that draws nothing -- is moved to where the reference
    # lines still lack ink. None = automatic: every 50 steps with a trace loss (strokes of the
    # image-space loss can shrink to dots), off with CLIP alone (the paper). 0 = off.
    reseed_interval: Optional[int] = None
    reseed_min_length: float = 3.0
    reseed_until: float = 0.7

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides) -> "OptimizeConfig":
        if preset not in PRESETS:
            raise OptimizeError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in PRESETS[preset].items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - names
        if unknown:
            raise OptimizeError(f"unknown optimiser setting(s): {sorted(unknown)}")
        return cls(**values)

    def validate(self) -> "OptimizeConfig":
        def whole(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise OptimizeError(f"{name} must be a whole number >= {lo}; got {v!r}")
        whole("iterations", 0)
        whole("num_augs", 0)
        whole("aug_pool", 0)
        whole("eval_interval", 1)
        whole("callback_interval", 1)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise OptimizeError(f"lr must be a positive number (1.0 moves points about a pixel per step); got {self.lr!r}")
        if self.mixed_precision not in ("auto", "off", "bf16", "fp16"):
            raise OptimizeError(f"mixed_precision must be auto, off, bf16 or fp16; got {self.mixed_precision!r}")
        if self.text is not None and not isinstance(self.text, str):
            raise OptimizeError(f"text must be a prompt string such as 'a cat, side view'; got {self.text!r}")
        if isinstance(self.text_weight, bool) or not isinstance(self.text_weight, (int, float)) \
                or not math.isfinite(self.text_weight) or self.text_weight < 0:
            raise OptimizeError(f"text_weight must be a number >= 0 (0.3 by default); got {self.text_weight!r}")
        if self.text and self.text.strip() and self.loss == "trace":
            raise OptimizeError("a text prompt needs the CLIP loss; use loss 'clip' or 'clip+trace'")
        from .style import StyleError, check_pen_width
        try:
            check_pen_width(self.pen_width)
        except StyleError as exc:
            raise OptimizeError(str(exc)) from None
        if self.loss not in LOSS_MODES:
            raise OptimizeError(f"loss must be one of {', '.join(LOSS_MODES)}; got {self.loss!r}")
        if isinstance(self.trace_weight, bool) or not isinstance(self.trace_weight, (int, float)) \
                or not math.isfinite(self.trace_weight) or self.trace_weight < 0 \
                or (self.loss == "clip+trace" and self.trace_weight == 0):
            raise OptimizeError(f"trace_weight must be a number > 0 (1.0 by default); got {self.trace_weight!r}")
        try:
            sig = [float(v) for v in self.trace_sigmas]
        except (TypeError, ValueError):
            sig = []
        if not sig or any(not math.isfinite(v) or v <= 0 for v in sig):
            raise OptimizeError(f"trace_sigmas must be positive blur radii in pixels, e.g. {DEFAULT_TRACE_SIGMAS}; "
                                f"got {self.trace_sigmas!r}")
        if self.reseed_interval is not None:
            whole("reseed_interval", 0)
        if isinstance(self.reseed_min_length, bool) or not isinstance(self.reseed_min_length, (int, float)) \
                or not math.isfinite(self.reseed_min_length) or self.reseed_min_length <= 0:
            raise OptimizeError(f"reseed_min_length must be a positive length in pixels (3 by default); "
                                f"got {self.reseed_min_length!r}")
        if isinstance(self.reseed_until, bool) or not isinstance(self.reseed_until, (int, float)) \
                or not 0 <= self.reseed_until <= 1:
            raise OptimizeError(f"reseed_until must be a fraction of the iterations in [0, 1]; got {self.reseed_until!r}")
        if self.trace_reference not in TRACE_REFERENCES:
            raise OptimizeError(f"trace_reference must be one of {', '.join(TRACE_REFERENCES)}; "
                                f"got {self.trace_reference!r}")
        return self

    @property
    def uses_clip(self) -> bool:
        return self.loss != "trace"

    @property
    def reseed_every(self) -> int:
        """Steps between re-seeding checks (0 = never); see ``reseed_interval``."""
        if self.reseed_interval is not None:
            return int(self.reseed_interval)
        return AUTO_RESEED_INTERVAL if self.loss != "clip" else 0


@dataclass
class OptimizeResult:
    strokes: Strokes                 # best state per candidate (losses = best eval loss, iterations = when)
    final: Strokes                   # state after the last step taken
    history: torch.Tensor            # [n_evals, B] eval losses
    history_iterations: List[int]    # iteration of each row of `history`
    iterations_run: int
    cancelled: bool
    seconds: float
    train_losses: torch.Tensor = field(default=None)  # [iterations_run, B] training loss per step
    diverged: bool = False           # stopped because points became non-finite (best state returned)
    reseeded: List[int] = field(default_factory=list)  # collapsed strokes re-seeded, per candidate

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(1, self.iterations_run)


def _amp_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype for the encoder: fp16 on GPU for "auto" (bf16 only when asked), fp32 on CPU.

    fp16, not bf16, by measurement (bench/precision.py, bench/results/precision_cpu.json): the RN101
    loss gradient under fp16 autocast kept a cosine of >= 0.9987 with fp32 on every picture, bf16 only
    0.990 (and a 2% different loss), below the 0.995 we require. The original CLIPasso ran in fp16 too.
    fp16 runs with a GradScaler (see `optimize`).
    """
    if mode == "off":
        return None
    if device.type == "cuda":
        if mode in ("bf16", "fp16"):
            return torch.bfloat16 if mode == "bf16" else torch.float16
        return torch.float16
    if mode == "bf16":  # explicit request only; CPU bf16 autocast is slower on most CPUs
        return torch.bfloat16
    return None


def _prepare_target(target: torch.Tensor, canvas) -> torch.Tensor:
    from .images import as_rgb

    t = as_rgb(target) if not (isinstance(target, torch.Tensor) and target.ndim == 3 and target.shape[0] == 3) \
        else target.detach().float()
    if not bool(torch.isfinite(t).all()):
        raise OptimizeError("the target image contains NaN or infinite values; check the node or file that made it")
    if float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3:
        raise OptimizeError(f"the target image must be RGB in 0..1; got values {float(t.min()):.3g}..{float(t.max()):.3g}")
    if tuple(t.shape[-2:]) != tuple(canvas):
        t = F.interpolate(t.unsqueeze(0), size=tuple(canvas), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp(0, 1)
    return t


def _text_guidance(encoder, cfg: OptimizeConfig) -> Dict:
    """CLIPassoLoss keyword arguments of the text term (none without a prompt)."""
    from .text import TextGuidanceError, check_prompt, encode_text

    prompt = check_prompt(cfg.text)
    if prompt is None or cfg.text_weight == 0:
        return {}
    try:
        return dict(text_embedding=encode_text(encoder, prompt), text_weight=float(cfg.text_weight))
    except TextGuidanceError as exc:
        raise OptimizeError(str(exc)) from None


def _style_state(strokes: Strokes, target: torch.Tensor, cfg: OptimizeConfig, device):
    """Widths and colours to draw with, optimised or fixed (`clipasso.style.StyleState`)."""
    from .style import StyleError, StyleState, colors_from_image

    start = strokes
    if cfg.color_from_image:
        start = colors_from_image(start.to(device), target, background=cfg.background)
    widths = start.widths.detach().to(device, torch.float32)
    if cfg.pen_width is not None and not cfg.optimize_width:
        widths = torch.full_like(widths, cfg.pen_width / 2.0)  # optimise with the pen it will be drawn with
    try:
        return StyleState(widths, start.colors.detach().to(device, torch.float32),
                          optimize_width=cfg.optimize_width, optimize_opacity=cfg.optimize_opacity,
                          optimize_color=cfg.optimize_color, width_range=cfg.width_range,
                          min_opacity=cfg.min_opacity, width_lr=cfg.width_lr, opacity_lr=cfg.opacity_lr,
                          color_lr=cfg.color_lr)
    except StyleError as exc:
        raise OptimizeError(str(exc)) from None


def build_loss(cfg: OptimizeConfig, encoder, target: torch.Tensor, device) -> object:
    """The loss object ``optimize`` uses for ``cfg`` (`CLIPassoLoss`, `TraceLoss` or `CombinedLoss`);
    ``target`` is ``[3,H,W]`` at the canvas size on ``device``. Its ``eval_loss`` is the clean-view loss."""
    loss_fn = CLIPassoLoss(encoder, target, layer_weights=cfg.layer_weights, semantic_weight=cfg.semantic_weight,
                           num_augs=cfg.num_augs, distortion=cfg.distortion, crop_scale=cfg.crop_scale,
                           distance=cfg.distance, aug_pool=cfg.aug_pool, pool_seed=cfg.pool_seed,
                           amp_dtype=_amp_dtype(cfg.mixed_precision, device),
                           **_text_guidance(encoder, cfg)) if cfg.uses_clip else None
    if cfg.loss != "clip":
        trace = TraceLoss(target, sigmas=cfg.trace_sigmas, reference=cfg.trace_reference, device=device)
        loss_fn = trace if loss_fn is None else CombinedLoss(loss_fn, trace, cfg.trace_weight)
    return loss_fn


def _reference_ink(loss_fn, target: torch.Tensor) -> torch.Tensor:
    """[H,W] where the sketch should have ink: the trace loss's reference, else the target's lines."""
    trace = loss_fn if isinstance(loss_fn, TraceLoss) else getattr(loss_fn, "trace", None)
    if trace is not None:
        return trace.reference_ink[0, 0].float()
    from .losses import line_map

    return line_map(target).to(target.device)


def reseed_collapsed(points: torch.Tensor, alphas: torch.Tensor, image: torch.Tensor, reference: torch.Tensor,
                     generators: Sequence[torch.Generator], min_length: float,
                     optimizer: Optional[torch.optim.Optimizer] = None) -> List[int]:
    """Move every visible stroke shorter than ``min_length`` px to a spot of ``reference`` that the
    sketch ``image`` [B,3,H,W] does not cover yet; returns how many strokes moved per candidate.

    points [B,S,P,2] (changed in place), alphas [B,S]. A moved stroke becomes a new CLIPasso squiggle
    (`clipasso.init.random_walk`, as at the start) from a point drawn with probability proportional to the
    missing ink (the reference minus the sketch's blurred ink; anywhere on the reference lines when
    nothing is missing). Its Adam moments are reset: the first moment to 0, the second to the mean
    of the other strokes' (steps of the usual size, without the bias-correction jump of a zero).
    """
    from .init import DEFAULT_RADIUS, random_walk
    from .losses import blur_ink, ink_of

    b, s, p, _ = points.shape
    h, w = image.shape[-2:]
    with torch.no_grad():
        length = (points[:, :, 1:] - points[:, :, :-1]).norm(dim=-1).sum(-1)  # control polygon [B,S]
        collapsed = (length < min_length) & (alphas > 0)
        moved = [0] * b
        if not bool(collapsed.any()):
            return moved
        state = optimizer.state.get(points) if optimizer is not None else None
        have = blur_ink(ink_of(image.detach().float()), 1.0)[:, 0].clamp(0, 1)  # [B,H,W]
        ref = reference.to(have.device, have.dtype)
        for i in range(b):
            idx = torch.nonzero(collapsed[i]).flatten()
            if idx.numel() == 0:
                continue
            missing = (ref - have[i]).clamp(min=0).flatten().cpu().double()
            if float(missing.sum()) <= 1e-9:
                missing = ref.flatten().cpu().double()
            if float(missing.sum()) <= 1e-9:
                continue  # nothing to draw anywhere: leave the stroke
            spots = torch.multinomial(missing, idx.numel(), replacement=True, generator=generators[i])
            starts = torch.stack([spots % w + 0.5, spots // w + 0.5], -1).float()  # (x, y)
            new = random_walk(starts, (p - 1) // 3, DEFAULT_RADIUS, (h, w), generators[i])
            points[i, idx] = new.to(points.device, points.dtype)
            if state:
                keep = ~collapsed[i]
                for key, value in state.items():
                    if key == "exp_avg":
                        value[i, idx] = 0
                    elif key == "exp_avg_sq":
                        value[i, idx] = value[i][keep].mean(0) if bool(keep.any()) else 0
            moved[i] = int(idx.numel())
        return moved


def optimize(strokes: Strokes, target: torch.Tensor, encoder, config: Optional[OptimizeConfig] = None,
             callback: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None,
             device=None, seeds: Optional[Sequence[int]] = None) -> OptimizeResult:
    """Optimise every candidate of ``strokes`` towards ``target`` ([3,H,W] 0..1) in one batch.

    encoder: a `ClipEncoder` (from `clipasso.models.load_clip`); None with ``config.loss="trace"``.
    callback(iteration, losses, render): called every ``callback_interval`` iterations and at the end;
      ``losses`` is a dict of per-candidate tensors ``train``, ``eval`` (last eval), ``best``;
      ``render`` is the sketch rendered in that iteration ``[B,3,H,W]`` (detached, on the compute device).
    should_stop(): checked every iteration; returning True stops and returns the best so far
      (an exception raised inside it propagates, which is how ComfyUI interrupts).
    seeds: per-candidate augmentation seeds (default ``strokes.seeds`` or 0..B-1).
    The control points are optimised; widths, opacities and colours too when the config asks
    (``optimize_width`` / ``optimize_opacity`` / ``optimize_color``, kept within their bounds).
    ``color_from_image`` starts every stroke with the target's colour under it; ``pen_width`` draws
    every stroke with that full width (and the output keeps it whatever was optimised); ``text``
    adds the text-guidance term (`clipasso.text`).
    """
    from .raster import rasterize

    if not isinstance(strokes, Strokes):
        raise OptimizeError(f"optimize() needs a Strokes value; got {type(strokes).__name__}")
    cfg = (config or OptimizeConfig()).validate()
    if encoder is None and cfg.uses_clip:
        raise OptimizeError(f"loss {cfg.loss!r} needs a CLIP encoder; pass one (clipasso.models.load_clip) "
                            "or use loss='trace', which needs no weights")
    if encoder is None:
        device = torch.device(device) if device is not None else torch.device("cpu")
    else:
        device = torch.device(device) if device is not None else encoder.device
    if encoder is not None and cfg.uses_clip and device != encoder.device:
        raise OptimizeError(f"the encoder is on {encoder.device} but optimisation was asked on {device}; "
                            "load the encoder on the same device")
    b = strokes.num_candidates
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (strokes.seeds or range(b))))
    if len(seeds) != b:
        raise OptimizeError(f"need one seed per candidate ({b}); got {len(seeds)}")
    h, w = strokes.canvas
    target = _prepare_target(target, (h, w)).to(device)

    loss_fn = build_loss(cfg, encoder, target, device)
    scaler = None
    if loss_fn.amp_dtype == torch.float16 and device.type == "cuda":
        scaler = torch.amp.GradScaler("cuda")
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    points = strokes.points.detach().to(device, torch.float32).clone().requires_grad_(True)
    style = _style_state(strokes, target, cfg, device)
    opt = torch.optim.Adam([{"params": [points], "lr": cfg.lr}] + style.param_groups(), lr=cfg.lr)

    best_loss = torch.full((b,), float("inf"), device=device)
    best_points = points.detach().clone()
    best_widths, best_colors = style.snapshot()
    best_iter = torch.zeros(b, dtype=torch.long, device=device)
    last_eval = torch.full((b,), float("nan"), device=device)
    history, history_its, train_hist = [], [], []
    reseed_every = cfg.reseed_every
    reseed_last = int(cfg.reseed_until * cfg.iterations)
    reseed_gens = [torch.Generator().manual_seed(s + 7919) for s in seeds]  # apart from the views' streams
    reseeded = [0] * b
    reference = _reference_ink(loss_fn, target) if reseed_every else None
    min_length = float(cfg.reseed_min_length) * max(h, w) / 224.0

    def render(p):
        return rasterize(p, style.widths, style.colors(), h, w, cfg.background)[0]

    def evaluate(it: int, image: torch.Tensor):
        nonlocal last_eval
        with torch.no_grad():
            ev = loss_fn.eval_loss(image.detach())["total"].detach()
        ev = torch.where(torch.isfinite(ev), ev, torch.full_like(ev, float("inf")))
        improved = ev < best_loss
        best_loss.copy_(torch.where(improved, ev, best_loss))
        best_points[improved] = points.detach()[improved]
        best_widths[improved] = style.widths.detach()[improved]
        best_colors[improved] = style.colors().detach()[improved]
        best_iter[improved] = it
        last_eval = ev
        history.append(ev.cpu())
        history_its.append(it)

    start = time.perf_counter()
    cancelled = diverged = False
    it = 0
    image = None
    train = torch.full((b,), float("nan"))
    last_cb = -1
    while True:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        if it >= cfg.iterations:
            break
        opt.zero_grad(set_to_none=True)
        image = render(points)
        if it % cfg.eval_interval == 0:
            evaluate(it, image)  # the state about to be stepped: evaluated and kept as one
        terms = loss_fn.train_loss(image, gens)
        total = terms["total"]
        objective = total.sum()  # sum: each candidate's gradient is its own loss's gradient
        if scaler is not None:
            scaler.scale(objective).backward()
            scaler.step(opt)
            scaler.update()
        else:
            objective.backward()
            opt.step()
        style.project()
        train = total.detach().cpu()
        train_hist.append(train)
        it += 1
        if not (bool(torch.isfinite(points.detach()).all()) and bool(torch.isfinite(style.widths.detach()).all())
                and bool(torch.isfinite(style.colors().detach()).all())):
            # Keep what was reached: go back to each candidate's best state and stop.
            diverged = True
            warnings.warn(f"the optimisation diverged at iteration {it} (non-finite control points); "
                          "returning the best state reached. Lower the learning rate.", RuntimeWarning,
                          stacklevel=2)
            with torch.no_grad():
                points.copy_(best_points)
            style.restore(best_widths, best_colors)
            break
        if reseed_every and it % reseed_every == 0 and it <= reseed_last:
            moved = reseed_collapsed(points, style.colors().detach()[..., 3], image, reference, reseed_gens,
                                     min_length, opt)
            reseeded = [a + m for a, m in zip(reseeded, moved)]
        if callback is not None and it % cfg.callback_interval == 0:
            callback(it, {"train": train, "eval": last_eval.cpu(), "best": best_loss.cpu()}, image.detach())
            last_cb = it

    # The state reached last (after the final step, or when cancelled) is evaluated too.
    with torch.no_grad():
        image = render(points.detach())
    if not history_its or history_its[-1] != it:
        evaluate(it, image)
    if callback is not None and last_cb != it:
        callback(it, {"train": train, "eval": last_eval.cpu(), "best": best_loss.cpu()}, image.detach())
    seconds = time.perf_counter() - start

    meta = dict(seeds=seeds)
    widths, colors = style.snapshot()
    if cfg.pen_width is not None:  # the pen draws every output stroke with one width
        best_widths = torch.full_like(best_widths, cfg.pen_width / 2.0)
        widths = torch.full_like(widths, cfg.pen_width / 2.0)
    best = Strokes(best_points.detach(), best_widths, best_colors, strokes.canvas, losses=best_loss.detach(),
                   iterations=best_iter, **meta)
    final = Strokes(points.detach().clone(), widths, colors, strokes.canvas, losses=last_eval.detach(),
                    iterations=torch.full((b,), it, dtype=torch.long), **meta)
    return OptimizeResult(strokes=best.cpu(), final=final.cpu(), history=torch.stack(history),
                          history_iterations=history_its, iterations_run=it, cancelled=cancelled,
                          seconds=seconds, diverged=diverged, reseeded=reseeded,
                          train_losses=torch.stack(train_hist) if train_hist else torch.zeros(0, b))


__all__ = ["optimize", "reseed_collapsed", "OptimizeConfig", "OptimizeResult", "OptimizeError", "PRESETS", "LOSS_MODES"]
