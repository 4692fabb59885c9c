"""The optimisation core: one loop over a `Run`; every behaviour that changes when the loop steps, stops
or keeps a state is a policy (`clipasso.optimize.policies`).

One iteration: render every candidate; on an evaluation iteration measure the clean-view loss of that
state and keep it as the candidate's best if it improved (then ``after_eval`` hooks, which may cut
candidates or stop); the training loss of the running candidates, summed; backward and an Adam step
(a policy may take that step, e.g. with a GradScaler); widths and colours back into their bounds; the
frozen candidates back where they were frozen; then ``after_step`` hooks (which may stop or move
strokes) and the progress callback. The state reached last is evaluated too.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch

from ..strokes import Strokes


@dataclass(eq=False)
class Run:
    """The state of one optimisation run, shared by the core loop and its policies.

    ``points`` [B,S,P,2] and the ``style`` (widths, colours) are what Adam moves; ``best_*`` hold each
    candidate's best evaluated state (keep-best: `evaluate`); ``active`` lists the candidates still
    optimised (None: all), the others are ``frozen`` where they were at iteration ``frozen_at``.
    """

    config: object  # the validated OptimizeConfig
    objective: object  # the clipasso.objective.Objective
    points: torch.Tensor
    style: object  # clipasso.optimize.style.StyleState
    optimizer: torch.optim.Optimizer
    generators: List[torch.Generator]  # per candidate: the augmented views' random stream
    seeds: Tuple[int, ...]
    canvas: Tuple[int, int]  # (H, W) in pixels
    best_loss: torch.Tensor
    best_points: torch.Tensor
    best_widths: torch.Tensor
    best_colors: torch.Tensor
    best_iter: torch.Tensor
    last_eval: torch.Tensor
    train: torch.Tensor  # the last step's training loss per candidate (NaN: not run)
    iteration: int = 0
    image: Optional[torch.Tensor] = None  # the sketch rendered in this iteration [B,3,H,W]
    history: List[torch.Tensor] = field(default_factory=list)
    history_iterations: List[int] = field(default_factory=list)
    train_history: List[torch.Tensor] = field(default_factory=list)
    candidate_steps: int = 0
    active: Optional[torch.Tensor] = None
    survivors: Optional[List[int]] = None
    frozen: Optional[tuple] = None  # (indices, points, widths, rgb, alpha) of the frozen candidates
    frozen_at: Optional[int] = None
    eval_also: Set[int] = field(default_factory=set)  # iterations evaluated besides every eval_interval
    report: Dict[str, object] = field(default_factory=dict)  # OptimizeResult fields a policy fills in

    @classmethod
    def begin(cls, strokes: Strokes, objective, config, seeds: Sequence[int], style) -> "Run":
        device = objective.device
        b = strokes.num_candidates
        points = strokes.points.detach().to(device, torch.float32).clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [points], "lr": config.lr}] + style.param_groups(), lr=config.lr)
        best_widths, best_colors = style.snapshot()
        return cls(
            config=config,
            objective=objective,
            points=points,
            style=style,
            optimizer=opt,
            generators=[torch.Generator().manual_seed(s) for s in seeds],
            seeds=tuple(seeds),
            canvas=tuple(strokes.canvas),
            best_loss=torch.full((b,), float("inf"), device=device),
            best_points=points.detach().clone(),
            best_widths=best_widths,
            best_colors=best_colors,
            best_iter=torch.zeros(b, dtype=torch.long, device=device),
            last_eval=torch.full((b,), float("nan"), device=device),
            train=torch.full((b,), float("nan")),
        )

    @property
    def candidates(self) -> int:
        return int(self.points.shape[0])

    @property
    def device(self) -> torch.device:
        return self.points.device

    def render(self, points: torch.Tensor) -> torch.Tensor:
        from ..render.raster import rasterize

        h, w = self.canvas
        return rasterize(
            points, self.style.widths, self.style.colors(), h, w, self.config.background, self.config.renderer
        )[0]

    def evaluate(self) -> None:
        """Measure the clean-view loss of the state drawn in ``image``; keep it where it is a candidate's best."""
        it, b = self.iteration, self.candidates
        with torch.no_grad():
            shown = self.image.detach() if self.active is None else self.image.detach()[self.active]
            pts = self.points_for_loss()
            part = self.objective.eval_loss(shown, None if pts is None else pts.detach())["total"].detach()
        part = torch.where(torch.isfinite(part), part, torch.full_like(part, float("inf")))
        if self.active is None:
            ev = part
        else:  # frozen candidates: no new evaluation (NaN in the history), their last one kept
            ev = torch.full((b,), float("nan"), device=self.device, dtype=part.dtype)
            ev[self.active] = part
        improved = ev < self.best_loss  # NaN compares False
        self.best_loss.copy_(torch.where(improved, ev, self.best_loss))
        self.best_points[improved] = self.points.detach()[improved]
        self.best_widths[improved] = self.style.widths.detach()[improved]
        self.best_colors[improved] = self.style.colors().detach()[improved]
        self.best_iter[improved] = it
        self.last_eval = ev if self.active is None else torch.where(torch.isnan(ev), self.last_eval, ev)
        self.history.append(ev.cpu())
        self.history_iterations.append(it)

    def train_loss(self) -> torch.Tensor:
        """Training loss per running candidate (only they are worth the loss's cost)."""
        pts = self.points_for_loss()
        if self.active is None:
            return self.objective.train_loss(self.image, self.generators, pts)["total"]
        generators = [self.generators[int(i)] for i in self.active]
        return self.objective.train_loss(self.image[self.active], generators, pts)["total"]

    def points_for_loss(self) -> Optional[torch.Tensor]:
        """The running candidates' control points, for an objective with a term on them (else None)."""
        if not getattr(self.objective, "needs_points", False):
            return None
        return self.points if self.active is None else self.points[self.active]

    def record_step(self, total: torch.Tensor) -> None:
        if self.active is None:
            self.train = total.detach().cpu()
        else:
            self.train = torch.full((self.candidates,), float("nan"))
            self.train[self.active.cpu()] = total.detach().cpu().to(self.train.dtype)
        self.candidate_steps += int(total.shape[0])
        self.train_history.append(self.train)
        self.iteration += 1

    def freeze(self, survivors: Sequence[int]) -> None:
        """Only ``survivors`` go on; the others stay as they are now and get no more loss or steps."""
        self.survivors = sorted(int(i) for i in survivors)
        self.active = torch.tensor(self.survivors, dtype=torch.long, device=self.device)
        dropped = torch.tensor(
            [i for i in range(self.candidates) if i not in self.survivors], dtype=torch.long, device=self.device
        )
        self.frozen = (
            dropped,
            self.points.detach()[dropped].clone(),
            self.style.widths.detach()[dropped].clone(),
            self.style.rgb.detach()[dropped].clone(),
            self.style.alpha.detach()[dropped].clone(),
        )
        self.frozen_at = self.iteration

    def hold_frozen(self) -> None:
        """Put the frozen candidates back where they were frozen (Adam's momentum would move them on)."""
        if self.frozen is None:
            return
        idx, p0, w0, rgb0, a0 = self.frozen
        with torch.no_grad():
            self.points[idx] = p0
            self.style.widths[idx] = w0
            self.style.rgb[idx] = rgb0
            self.style.alpha[idx] = a0

    def restore_best(self) -> None:
        """Every candidate back to its best evaluated state."""
        with torch.no_grad():
            self.points.copy_(self.best_points)
        self.style.restore(self.best_widths, self.best_colors)

    def losses(self) -> Dict[str, torch.Tensor]:
        """What the progress callback gets: per-candidate ``train``, ``eval`` (last) and ``best`` losses."""
        return {"train": self.train, "eval": self.last_eval.cpu(), "best": self.best_loss.cpu()}


def _first_stop(hooks, run: Run) -> Optional[str]:
    for hook in hooks:
        reason = hook(run)
        if reason:
            return reason
    return None


def run_loop(
    run: Run, policies: Sequence, callback: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None
) -> str:
    """Step ``run`` until the iteration budget, ``should_stop()`` or a policy ends it; returns why it ended
    ("iterations", "cancelled" or the policy's reason). The policies act in the order given."""
    cfg = run.config
    for policy in policies:
        policy.start(run)
    reason, last_cb = "iterations", -1
    while True:
        if should_stop is not None and should_stop():
            reason = "cancelled"
            break
        if run.iteration >= cfg.iterations:
            break
        run.optimizer.zero_grad(set_to_none=True)
        run.image = run.render(run.points)
        if run.iteration % cfg.eval_interval == 0 or run.iteration in run.eval_also:
            run.evaluate()  # the state about to be stepped: evaluated and kept as one
            stop = _first_stop([p.after_eval for p in policies], run)
            if stop:
                reason = stop
                break
        total = run.train_loss()
        objective = total.sum()  # sum: each candidate's gradient is its own loss's gradient
        if not any(p.backward_step(run, objective) for p in policies):
            objective.backward()
            run.optimizer.step()
        run.style.project()
        run.hold_frozen()
        run.record_step(total)
        stop = _first_stop([p.after_step for p in policies], run)
        if stop:
            reason = stop
            break
        if callback is not None and run.iteration % cfg.callback_interval == 0:
            callback(run.iteration, run.losses(), run.image.detach())
            last_cb = run.iteration
    # The state reached last (after the final step, or when stopped) is evaluated too.
    with torch.no_grad():
        run.image = run.render(run.points.detach())
    if not run.history_iterations or run.history_iterations[-1] != run.iteration:
        run.evaluate()
    if callback is not None and last_cb != run.iteration:
        callback(run.iteration, run.losses(), run.image.detach())
    return reason


def warn_caller(message: str, category=RuntimeWarning) -> None:
    """Warn at the first frame outside clipasso.optimize (the code that called `optimize`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


__all__ = ["Run", "run_loop", "warn_caller"]
