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
  (bench/studies/seed_trial.py measures how often, and what a different winner costs);
- a plateau stop (``plateau``, ``plateau_window``): the run ends once no running candidate's best
  eval loss improved by more than that share over the window; the iteration budget stays the cap.

Where the code is: `optimize` checks its inputs, builds the run state and the policies and turns the
run into an `OptimizeResult`; the loop itself is `loop.run_loop` over a `loop.Run` (points, optimiser,
best state per candidate, histories, frozen candidates). Everything that changes when the loop steps,
stops or keeps a state is a policy in `policies` (seed trial, plateau stop, re-seeding, divergence
rollback, the GradScaler of fp16), chosen from the settings by `policies.policies_for`; a caller adds
its own with ``optimize(..., extra_policies=[...])``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from ..errors import OptimizeError
from ..strokes import Strokes, pen_half_width

from ..settings import OptimizeConfig
from .loop import Run, run_loop
from .policies import Policy, policies_for, reseed_collapsed


@dataclass
class OptimizeResult:
    strokes: Strokes  # best state per candidate (losses = best eval loss, iterations = when)
    final: Strokes  # state after the last step taken
    history: torch.Tensor  # [n_evals, B] eval losses
    history_iterations: List[int]  # iteration of each row of `history`
    iterations_run: int
    cancelled: bool
    seconds: float
    train_losses: torch.Tensor = field(default=None)  # [iterations_run, B] training loss per step (NaN: not run)
    diverged: bool = False  # stopped because points became non-finite (best state returned)
    reseeded: List[int] = field(default_factory=list)  # collapsed strokes re-seeded, per candidate
    compile: Optional[dict] = None  # the compile setting's decision and step times (policies.CompileEncoder)
    stop_reason: str = "iterations"  # iterations (the budget), plateau, cancelled or diverged
    trial_iteration: Optional[int] = None  # where the seed trial ended (None: every candidate ran to the end)
    survivors: Optional[List[int]] = None  # candidates that went on after the trial (indices into B)
    candidate_steps: int = 0  # steps taken summed over candidates (the work done: B x iterations without a trial)

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(1, self.iterations_run)

    def trial_text(self) -> str:
        """How the seed trial cut the candidates, in words ('' without a cut)."""
        if self.trial_iteration is None or self.survivors is None:
            return ""
        seeds = self.strokes.seeds or list(range(self.strokes.num_candidates))
        kept = ", ".join(str(seeds[i]) for i in self.survivors)
        return (
            f"all {self.strokes.num_candidates} seeds ran {self.trial_iteration} iterations, then only "
            f"seed{'s' if len(self.survivors) > 1 else ''} {kept} went on"
        )


def _style_state(strokes: Strokes, target: torch.Tensor, cfg: OptimizeConfig, device):
    """Widths and colours to draw with, optimised or fixed (`clipasso.optimize.style.StyleState`)."""
    from .style import StyleError, StyleState, colors_from_image

    start = strokes
    if cfg.color_from_image:
        start = colors_from_image(start.to(device), target, background=cfg.background)
    widths = start.widths.detach().to(device, torch.float32)
    if cfg.pen_width is not None and not cfg.optimize_width:
        widths = torch.full_like(widths, pen_half_width(cfg.pen_width))  # optimise with the pen it will draw with
    try:
        return StyleState(widths, start.colors.detach().to(device, torch.float32), cfg)
    except StyleError as exc:
        raise OptimizeError(str(exc)) from None


def optimize(
    strokes: Strokes,
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    device=None,
    seeds: Optional[Sequence[int]] = None,
    extra_policies: Sequence[Policy] = (),
) -> OptimizeResult:
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
    extra_policies: `clipasso.optimize.policies.Policy` objects that act after the ones the config asks
      for (`policies_for`); a stop reason one of them returns becomes the result's ``stop_reason``.
    The control points are optimised; widths, opacities and colours too when the config asks
    (``optimize_width`` / ``optimize_opacity`` / ``optimize_color``, kept within their bounds).
    ``color_from_image`` starts every stroke with the target's colour under it; ``pen_width`` draws
    every stroke with that full width (and the output keeps it whatever was optimised); ``text``
    adds the text-guidance term (`clipasso.objective.text`).
    """
    if not isinstance(strokes, Strokes):
        raise OptimizeError(f"optimize() needs a Strokes value; got {type(strokes).__name__}")
    from ..objective import Objective

    extra = list(extra_policies)
    for p in extra:
        if not isinstance(p, Policy):
            raise OptimizeError(
                f"extra_policies takes clipasso.optimize.policies.Policy objects; got {type(p).__name__}"
            )
    cfg = (config or OptimizeConfig()).validate()
    h, w = strokes.canvas
    if isinstance(encoder, Objective):  # built once by the caller for this target
        loss_fn = encoder
        if device is not None and torch.device(device) != loss_fn.device:
            raise OptimizeError(f"the objective was built on {loss_fn.device} but optimisation was asked on {device}")
        device = loss_fn.device
        if tuple(loss_fn.canvas) != (h, w):
            raise OptimizeError(
                f"the objective's target is {loss_fn.canvas[0]}x{loss_fn.canvas[1]} but the strokes' canvas is {h}x{w}"
            )
    else:
        loss_fn = Objective.build(cfg, encoder, target, device, canvas=(h, w))
        device = loss_fn.device
    target = loss_fn.target
    b = strokes.num_candidates
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (strokes.seeds or range(b))))
    if len(seeds) != b:
        raise OptimizeError(f"need one seed per candidate ({b}); got {len(seeds)}")

    run = Run.begin(strokes, loss_fn, cfg, seeds, _style_state(strokes, target, cfg, device))
    policies = policies_for(cfg, loss_fn, b, (h, w)) + extra
    start = time.perf_counter()
    stop_reason = run_loop(run, policies, callback, should_stop)
    seconds = time.perf_counter() - start

    meta = dict(seeds=seeds, pictures=strokes.pictures, layers=strokes.layers)  # a layered sketch keeps its layers
    best_widths = run.best_widths
    widths, colors = run.style.snapshot()
    if cfg.pen_width is not None:  # the pen draws every output stroke with one width
        best_widths = torch.full_like(best_widths, pen_half_width(cfg.pen_width))
        widths = torch.full_like(widths, pen_half_width(cfg.pen_width))
    best = Strokes(
        run.best_points.detach(),
        best_widths,
        run.best_colors,
        strokes.canvas,
        losses=run.best_loss.detach(),
        iterations=run.best_iter,
        **meta,
    )
    ran = torch.full((b,), run.iteration, dtype=torch.long)
    if run.frozen is not None:  # the frozen candidates stopped where they were frozen
        ran[run.frozen[0].cpu()] = int(run.frozen_at)
    final = Strokes(
        run.points.detach().clone(),
        widths,
        colors,
        strokes.canvas,
        losses=run.last_eval.detach(),
        iterations=ran,
        **meta,
    )
    report = dict(dict(reseeded=[0] * b), **run.report)
    return OptimizeResult(
        strokes=best.cpu(),
        final=final.cpu(),
        history=torch.stack(run.history),
        history_iterations=run.history_iterations,
        iterations_run=run.iteration,
        cancelled=stop_reason == "cancelled",
        seconds=seconds,
        diverged=stop_reason == "diverged",
        train_losses=torch.stack(run.train_history) if run.train_history else torch.zeros(0, b),
        stop_reason=stop_reason,
        trial_iteration=run.frozen_at,
        survivors=run.survivors,
        candidate_steps=run.candidate_steps,
        **report,
    )


def optimize_pictures(
    strokes: Strokes,
    pictures: Sequence[torch.Tensor],
    encoder,
    config: Optional[OptimizeConfig] = None,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    device=None,
    on_picture: Optional[Callable[[int], None]] = None,
) -> Optional[Strokes]:
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
        raise OptimizeError(
            f"the strokes' canvas is {strokes.height}x{strokes.width}; CLIPasso optimises on a square canvas"
        )
    n = len(pictures)
    if n == 1:
        groups = [list(range(strokes.num_candidates))]
    else:
        groups = strokes.picture_groups()
        if strokes.pictures is None or len(groups) != n:
            have = "carry no picture index" if strokes.pictures is None else f"belong to {len(groups)} picture(s)"
            raise OptimizeError(
                f"the {strokes.num_candidates} candidates {have}, but there are {n} pictures; "
                "initialise the strokes from the same picture batch (Initialize Strokes)"
            )
    start = strokes.detach()  # fresh, autograd-capable copies
    results = []
    for i, (picture, group) in enumerate(zip(pictures, groups)):
        if should_stop is not None and should_stop():
            break
        if on_picture is not None:
            on_picture(i)
        target = prepare_target(picture, canvas=start.height, background_removal=False, framing="pad")[0]
        run = optimize(
            start.select(group), target, encoder, config, callback=callback, should_stop=should_stop, device=device
        )
        results.append(run.strokes)
    return Strokes.concat(results).cpu() if results else None


__all__ = [
    "optimize",
    "optimize_pictures",
    "reseed_collapsed",
    "OptimizeConfig",
    "OptimizeResult",
    "OptimizeError",
    "Policy",
]
