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

Two ways to spend less (both off by default, as in the original; the `fast` preset turns them on):

- a seed trial (``seed_trial``, ``seed_survivors``): all candidates run the first share of the
  iterations, then only the best go on; the others keep their best state and are not passed through
  the loss again. Since candidates never mix, a survivor ends exactly where it would have in the full
  batch, so the winner is the full run's whenever the leader at the cut is also the leader at the end
  (bench/seed_trial.py measures how often, and what a different winner costs);
- a plateau stop (``plateau``, ``plateau_window``): the run ends once no running candidate's best
  eval loss improved by more than that share over the window; the iteration budget stays the cap.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from ..errors import OptimizeError
from ..strokes import Strokes

from ..settings import AUTO_RESEED_INTERVAL, LOSS_MODES, PRESETS, OptimizeConfig  # noqa: F401 - re-exported


@dataclass
class OptimizeResult:
    strokes: Strokes                 # best state per candidate (losses = best eval loss, iterations = when)
    final: Strokes                   # state after the last step taken
    history: torch.Tensor            # [n_evals, B] eval losses
    history_iterations: List[int]    # iteration of each row of `history`
    iterations_run: int
    cancelled: bool
    seconds: float
    train_losses: torch.Tensor = field(default=None)  # [iterations_run, B] training loss per step (NaN: not run)
    diverged: bool = False           # stopped because points became non-finite (best state returned)
    reseeded: List[int] = field(default_factory=list)  # collapsed strokes re-seeded, per candidate
    stop_reason: str = "iterations"  # iterations (the budget), plateau, cancelled or diverged
    trial_iteration: Optional[int] = None   # where the seed trial ended (None: every candidate ran to the end)
    survivors: Optional[List[int]] = None   # candidates that went on after the trial (indices into B)
    candidate_steps: int = 0         # steps taken summed over candidates (the work done: B x iterations without a trial)

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(1, self.iterations_run)

    def trial_text(self) -> str:
        """How the seed trial cut the candidates, in words ('' without a cut)."""
        if self.trial_iteration is None or self.survivors is None:
            return ""
        seeds = self.strokes.seeds or list(range(self.strokes.num_candidates))
        kept = ", ".join(str(seeds[i]) for i in self.survivors)
        return (f"all {self.strokes.num_candidates} seeds ran {self.trial_iteration} iterations, then only "
                f"seed{'s' if len(self.survivors) > 1 else ''} {kept} went on")


def _style_state(strokes: Strokes, target: torch.Tensor, cfg: OptimizeConfig, device):
    """Widths and colours to draw with, optimised or fixed (`clipasso.optimize.style.StyleState`)."""
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


def reseed_collapsed(points: torch.Tensor, alphas: torch.Tensor, image: torch.Tensor, reference: torch.Tensor,
                     generators: Sequence[torch.Generator], min_length: float,
                     optimizer: Optional[torch.optim.Optimizer] = None) -> List[int]:
    """Move every visible stroke shorter than ``min_length`` px to a spot of ``reference`` that the
    sketch ``image`` [B,3,H,W] does not cover yet; returns how many strokes moved per candidate.

    points [B,S,P,2] (changed in place), alphas [B,S]. A moved stroke becomes a new CLIPasso squiggle
    (`clipasso.place.init.random_walk`, as at the start) from a point drawn with probability proportional to the
    missing ink (the reference minus the sketch's blurred ink; anywhere on the reference lines when
    nothing is missing). Its Adam moments are reset: the first moment to 0, the second to the mean
    of the other strokes' (steps of the usual size, without the bias-correction jump of a zero).
    """
    from ..place.init import DEFAULT_RADIUS, random_walk
    from ..objective.losses import blur_ink, ink_of

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

    encoder: a `ClipEncoder` (from `clipasso.models.load_clip`); None with ``config.loss="trace"``; or an
      `clipasso.objective.Objective` already built for the target (``target`` is then not used), which is
      how the pipeline, pruning, growing and ordering share one loss object.
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
    adds the text-guidance term (`clipasso.objective.text`).
    """
    from ..output.raster import rasterize

    if not isinstance(strokes, Strokes):
        raise OptimizeError(f"optimize() needs a Strokes value; got {type(strokes).__name__}")
    from ..objective import Objective

    cfg = (config or OptimizeConfig()).validate()
    h, w = strokes.canvas
    if isinstance(encoder, Objective):  # built once by the caller for this target
        loss_fn = encoder
        if device is not None and torch.device(device) != loss_fn.device:
            raise OptimizeError(f"the objective was built on {loss_fn.device} but optimisation was asked on {device}")
        device = loss_fn.device
        if tuple(loss_fn.canvas) != (h, w):
            raise OptimizeError(f"the objective's target is {loss_fn.canvas[0]}x{loss_fn.canvas[1]} but the strokes' "
                                f"canvas is {h}x{w}")
    else:
        loss_fn = Objective.build(cfg, encoder, target, device, canvas=(h, w))
        device = loss_fn.device
    target = loss_fn.target
    b = strokes.num_candidates
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (strokes.seeds or range(b))))
    if len(seeds) != b:
        raise OptimizeError(f"need one seed per candidate ({b}); got {len(seeds)}")
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
    # Seed trial (successive halving in one cut): every candidate runs until `trial_end`, then only the
    # `seed_survivors` lowest best-so-far eval losses go on. The others keep their best state (which loses
    # to every survivor's, so best-of-N never picks them) and cost nothing more: only the survivors are
    # passed through the loss. Adam and the views are per candidate, so a survivor goes on as it would
    # in the full batch (float rounding aside).
    reseed_every = cfg.reseed_every
    reseed_last = int(cfg.reseed_until * cfg.iterations)
    trial_end = int(round(cfg.seed_trial * cfg.iterations)) if cfg.seed_trial and b > cfg.seed_survivors else None
    if trial_end is not None and reseed_every:
        # re-seeding moves strokes (and re-ranks the seeds) until reseed_until: cut only once the last
        # re-seeded strokes had an interval to settle (bench/seed_trial.py: with the trace loss a cut at 20%
        # kept a clearly worse seed in some runs)
        trial_end = max(trial_end, reseed_last + reseed_every)
    if trial_end is not None and not 1 <= trial_end < cfg.iterations:
        trial_end = None
    active = None            # indices of the candidates still optimised (None: all of them)
    frozen = None            # (indices, points, widths, rgb, alpha) of the dropped candidates at the cut
    survivors = None
    plateau_window = int(cfg.plateau_window)
    stop_reason = "iterations"
    candidate_steps = 0
    reseed_gens = [torch.Generator().manual_seed(s + 7919) for s in seeds]  # apart from the views' streams
    reseeded = [0] * b
    reference = loss_fn.reference_ink() if reseed_every else None
    min_length = float(cfg.reseed_min_length) * max(h, w) / 224.0

    def render(p):
        return rasterize(p, style.widths, style.colors(), h, w, cfg.background)[0]

    def evaluate(it: int, image: torch.Tensor):
        nonlocal last_eval
        with torch.no_grad():
            shown = image.detach() if active is None else image.detach()[active]
            part = loss_fn.eval_loss(shown)["total"].detach()
        part = torch.where(torch.isfinite(part), part, torch.full_like(part, float("inf")))
        if active is None:
            ev = part
        else:  # dropped candidates: no new evaluation (NaN in the history), their last one kept
            ev = torch.full((b,), float("nan"), device=device, dtype=part.dtype)
            ev[active] = part
        improved = ev < best_loss  # NaN compares False
        best_loss.copy_(torch.where(improved, ev, best_loss))
        best_points[improved] = points.detach()[improved]
        best_widths[improved] = style.widths.detach()[improved]
        best_colors[improved] = style.colors().detach()[improved]
        best_iter[improved] = it
        last_eval = ev if active is None else torch.where(torch.isnan(ev), last_eval, ev)
        history.append(ev.cpu())
        history_its.append(it)

    def cut_seeds():
        """End of the seed trial: only the `seed_survivors` best go on; the rest are frozen as they are."""
        nonlocal active, frozen, survivors
        order = torch.argsort(best_loss.detach().cpu(), stable=True)
        survivors = sorted(int(i) for i in order[:int(cfg.seed_survivors)])
        active = torch.tensor(survivors, dtype=torch.long, device=device)
        dropped = torch.tensor(sorted(int(i) for i in order[int(cfg.seed_survivors):]), dtype=torch.long,
                               device=device)
        frozen = (dropped, points.detach()[dropped].clone(), style.widths.detach()[dropped].clone(),
                  style.rgb.detach()[dropped].clone(), style.alpha.detach()[dropped].clone())

    def hold_frozen():
        """Put the dropped candidates back where they were cut (Adam's momentum would move them on)."""
        if frozen is None:
            return
        idx, p0, w0, rgb0, a0 = frozen
        with torch.no_grad():
            points[idx] = p0
            style.widths[idx] = w0
            style.rgb[idx] = rgb0
            style.alpha[idx] = a0

    def plateaued(it: int) -> bool:
        """No running candidate's best eval loss improved by more than `plateau` (a share) over the last
        `plateau_window` steps."""
        if not cfg.plateau or it < plateau_window or not history_its:
            return False
        back = [k for k, at in enumerate(history_its) if at <= it - plateau_window]
        if not back:
            return False
        # the best loss then: the lowest evaluation up to that row (not evaluated / non-finite: none)
        then = torch.nan_to_num(torch.stack(history[:back[-1] + 1]), nan=math.inf, posinf=math.inf).amin(0)
        now = best_loss.detach().cpu()
        rows = range(b) if active is None else survivors
        for i in rows:
            old, new = float(then[i]), float(now[i])
            if not math.isfinite(old) or not math.isfinite(new):
                return False
            if old - new > float(cfg.plateau) * abs(old):
                return False
        return True

    start = time.perf_counter()
    cancelled = diverged = False
    it = 0
    image = None
    train = torch.full((b,), float("nan"))
    last_cb = -1
    while True:
        if should_stop is not None and should_stop():
            cancelled = True
            stop_reason = "cancelled"
            break
        if it >= cfg.iterations:
            break
        opt.zero_grad(set_to_none=True)
        image = render(points)
        if it % cfg.eval_interval == 0 or it == trial_end:
            evaluate(it, image)  # the state about to be stepped: evaluated and kept as one
            if it == trial_end:
                cut_seeds()
            if it % cfg.eval_interval == 0 and plateaued(it):
                stop_reason = "plateau"
                break
        if active is None:
            terms = loss_fn.train_loss(image, gens)
        else:  # only the survivors are worth the loss's cost; the others' rows get no gradient
            terms = loss_fn.train_loss(image[active], [gens[int(i)] for i in active])
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
        hold_frozen()
        if active is None:
            train = total.detach().cpu()
        else:
            train = torch.full((b,), float("nan"))
            train[active.cpu()] = total.detach().cpu().to(train.dtype)
        candidate_steps += int(total.shape[0])
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
            stop_reason = "diverged"
            break
        if reseed_every and it % reseed_every == 0 and it <= reseed_last:
            alphas = style.colors().detach()[..., 3]
            if active is not None:  # frozen candidates are not re-seeded
                alphas = alphas.clone()
                alphas[frozen[0]] = 0
            moved = reseed_collapsed(points, alphas, image, reference, reseed_gens, min_length, opt)
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

    meta = dict(seeds=seeds, pictures=strokes.pictures)
    widths, colors = style.snapshot()
    if cfg.pen_width is not None:  # the pen draws every output stroke with one width
        best_widths = torch.full_like(best_widths, cfg.pen_width / 2.0)
        widths = torch.full_like(widths, cfg.pen_width / 2.0)
    best = Strokes(best_points.detach(), best_widths, best_colors, strokes.canvas, losses=best_loss.detach(),
                   iterations=best_iter, **meta)
    ran = torch.full((b,), it, dtype=torch.long)
    if frozen is not None:  # the dropped candidates stopped at the end of the trial
        ran[frozen[0].cpu()] = int(trial_end)
    final = Strokes(points.detach().clone(), widths, colors, strokes.canvas, losses=last_eval.detach(),
                    iterations=ran, **meta)
    return OptimizeResult(strokes=best.cpu(), final=final.cpu(), history=torch.stack(history),
                          history_iterations=history_its, iterations_run=it, cancelled=cancelled,
                          seconds=seconds, diverged=diverged, reseeded=reseeded,
                          train_losses=torch.stack(train_hist) if train_hist else torch.zeros(0, b),
                          stop_reason=stop_reason, trial_iteration=trial_end if survivors is not None else None,
                          survivors=survivors, candidate_steps=candidate_steps)




def optimize_pictures(strokes: Strokes, pictures: Sequence[torch.Tensor], encoder, config: Optional[OptimizeConfig] = None,
                      callback: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None,
                      device=None, on_picture: Optional[Callable[[int], None]] = None) -> Optional[Strokes]:
    """Optimise the candidates of each picture against that picture (the Optimize Sketch node's call).

    pictures: ``[3,H,W]`` images; each is framed on the strokes' square canvas with a white margin
    (`clipasso.prepare.target.prepare_target`, framing "pad", matting off). The candidates of picture i
    are those whose ``strokes.pictures`` index is i (Initialize Strokes sets it); with one picture all
    of them. ``on_picture(i)`` is called before picture i; ``should_stop`` is also checked between
    pictures. Returns every candidate's best state, picture after picture (None if stopped before the
    first picture)."""
    from ..prepare.target import prepare_target

    if not isinstance(strokes, Strokes):
        raise OptimizeError(f"optimize_pictures() needs a Strokes value; got {type(strokes).__name__}")
    if strokes.height != strokes.width:
        raise OptimizeError(f"the strokes' canvas is {strokes.height}x{strokes.width}; CLIPasso optimises on a "
                            "square canvas")
    n = len(pictures)
    if n == 1:
        groups = [list(range(strokes.num_candidates))]
    else:
        groups = strokes.picture_groups()
        if strokes.pictures is None or len(groups) != n:
            have = "carry no picture index" if strokes.pictures is None else f"belong to {len(groups)} picture(s)"
            raise OptimizeError(f"the {strokes.num_candidates} candidates {have}, but there are {n} pictures; "
                                "initialise the strokes from the same picture batch (Initialize Strokes)")
    start = strokes.detach()  # fresh, autograd-capable copies
    results = []
    for i, (picture, group) in enumerate(zip(pictures, groups)):
        if should_stop is not None and should_stop():
            break
        if on_picture is not None:
            on_picture(i)
        target = prepare_target(picture, canvas=start.height, background_removal=False, framing="pad")[0]
        run = optimize(start.select(group), target, encoder, config, callback=callback, should_stop=should_stop,
                       device=device)
        results.append(run.strokes)
    return Strokes.concat(results).cpu() if results else None


__all__ = ["optimize", "optimize_pictures", "reseed_collapsed", "OptimizeConfig", "OptimizeResult", "OptimizeError", "PRESETS", "LOSS_MODES"]
