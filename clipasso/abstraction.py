"""Automatic abstraction: the sketch chooses its own stroke count for a target fidelity.

CLIPasso fixes the stroke count by hand, and the same count is too many for one picture and too
few for another. Here the user states how faithful the sketch must be instead:

    fidelity(k) = (L_blank - L_k) / (L_blank - L_full)

where ``L_blank`` is the eval loss of an empty canvas, ``L_full`` the eval loss of the sketch made
with a generous stroke budget (the input), and ``L_k`` the eval loss of the best sketch found with
``k`` strokes. A fidelity of 0.9 keeps 90 % of the loss improvement the generous budget reached.

Pruning: starting from the generous sketch, every remaining stroke is removed in turn (all of them
evaluated as one batch, the removed stroke made transparent), the stroke whose removal raises the
loss least is dropped, and the others are re-optimised for a few steps so they can take over its
work. The loss after each step gives the loss-versus-strokes curve; the chosen count is the smallest
one whose fidelity still reaches the target. All losses are the optimiser's own clean-view eval
loss (measured by `clipasso.optimize.optimize` with zero steps), so they are comparable with the
losses the optimiser reports and include whatever terms its configuration switches on.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .optimize import OptimizeConfig, optimize
from .strokes import Strokes

log = logging.getLogger(__name__)

EVAL_CHUNK = 16  # sketches evaluated per encoder batch (bounds memory)


class AbstractionError(ValueError):
    """Settings or inputs automatic abstraction or drawing order cannot work with."""


class NoImprovementError(AbstractionError):
    """The sketch is no closer to the picture than an empty canvas: there is no quality to keep."""


# --------------------------------------------------------------------------- shared helpers

def single_sketch(strokes: Strokes, what: str = "automatic abstraction") -> Strokes:
    """One sketch out of ``strokes``: itself if it has one candidate, else the lowest-loss candidate."""
    if not isinstance(strokes, Strokes):
        raise AbstractionError(f"{what} needs a clipasso Strokes value; got {type(strokes).__name__}")
    if strokes.num_candidates == 1:
        return strokes.cpu()
    if strokes.losses is None:
        raise AbstractionError(f"{what} works on one sketch, but these strokes hold {strokes.num_candidates} "
                               "candidates and no losses to pick the best by; select one candidate first "
                               "(Select Best, or Strokes.select)")
    from .select import select_best

    return select_best(strokes)[0].cpu()


def eval_config(config: Optional[OptimizeConfig]) -> OptimizeConfig:
    """The optimiser's settings reduced to evaluation: no steps, no augmentation pool to build."""
    cfg = config or OptimizeConfig()
    if not isinstance(cfg, OptimizeConfig):
        raise AbstractionError(f"config must be an OptimizeConfig; got {type(cfg).__name__}")
    # Strokes are measured as they are: nothing recoloured or clamped at the start (a transparent
    # stroke must stay transparent: that is how a stroke is left out).
    names = {f.name for f in dataclasses.fields(cfg)}
    off = {k: False for k in ("color_from_image", "optimize_width", "optimize_opacity", "optimize_color")
           if k in names}
    return dataclasses.replace(cfg, iterations=0, num_augs=0, aug_pool=0, **off).validate()


def reopt_config(config: Optional[OptimizeConfig], iterations: int) -> OptimizeConfig:
    """Settings of a short re-optimisation of strokes that already have their colours."""
    cfg = config or OptimizeConfig()
    extra = {"color_from_image": False} if any(f.name == "color_from_image" for f in dataclasses.fields(cfg)) else {}
    return dataclasses.replace(cfg, iterations=int(iterations),
                               eval_interval=max(1, min(cfg.eval_interval, max(1, int(iterations)))),
                               **extra).validate()


def masked_losses(sketch: Strokes, visible: torch.Tensor, target: torch.Tensor, encoder,
                  config: Optional[OptimizeConfig] = None, device=None, chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """Eval loss of ``sketch`` (one candidate) with only some strokes drawn, for many stroke subsets.

    visible: ``[N, S]`` bool, one row per subset (False = the stroke is made fully transparent).
    Returns ``[N]`` float losses on the CPU. An all-False row measures the empty canvas.
    """
    visible = torch.as_tensor(visible, dtype=torch.bool).cpu()
    if visible.ndim != 2 or visible.shape[1] != sketch.num_strokes:
        raise AbstractionError(f"visible must be [N, {sketch.num_strokes}]; got {tuple(visible.shape)}")
    cfg = eval_config(config)
    out = []
    for start in range(0, visible.shape[0], max(1, int(chunk))):
        rows = visible[start:start + chunk]
        n = rows.shape[0]
        colors = sketch.colors[0].expand(n, -1, -1).clone()
        colors[..., 3] = colors[..., 3] * rows.float()
        batch = Strokes(sketch.points[0].expand(n, -1, -1, -1).clone(), sketch.widths[0].expand(n, -1).clone(),
                        colors, sketch.canvas)
        run = optimize(batch, target, encoder, cfg, device=device, seeds=list(range(n)))
        out.append(run.strokes.losses.float().cpu())
    return torch.cat(out)


def drop_strokes(sketch: Strokes, keep: Sequence[int]) -> Strokes:
    """``sketch`` (one candidate) with only the strokes at ``keep`` (in that order)."""
    idx = torch.as_tensor(list(keep), dtype=torch.long)
    return Strokes(sketch.points[:, idx], sketch.widths[:, idx], sketch.colors[:, idx], sketch.canvas,
                   seeds=sketch.seeds)


def _check_fidelity(fidelity) -> float:
    if isinstance(fidelity, bool) or not isinstance(fidelity, (int, float)) or not math.isfinite(fidelity) \
            or not 0.0 < float(fidelity) <= 1.0:
        raise AbstractionError(f"fidelity must be a number in (0, 1] (the share of the loss improvement of the "
                               f"full sketch to keep; 0.9 keeps 90%); got {fidelity!r}")
    return float(fidelity)


# --------------------------------------------------------------------------- pruning

@dataclass
class AbstractionResult:
    strokes: Strokes                 # the chosen sketch (one candidate, `count` strokes, with its loss)
    count: int                       # chosen stroke count
    fidelity: float                  # the target asked for
    counts: List[int]                # stroke counts measured, from the full sketch down
    losses: List[float]              # eval loss at each count
    blank_loss: float                # eval loss of the empty canvas
    full_loss: float                 # eval loss of the input (generous) sketch
    sketches: Dict[int, Strokes] = field(default_factory=dict)  # the sketch reached at each count
    removed: List[int] = field(default_factory=list)  # input stroke indices in the order they were pruned
    cancelled: bool = False
    seconds: float = 0.0

    def fidelity_of(self, loss: float) -> float:
        return (self.blank_loss - loss) / (self.blank_loss - self.full_loss)

    @property
    def fidelities(self) -> List[float]:
        return [self.fidelity_of(v) for v in self.losses]

    def table(self) -> str:
        rows = ["strokes  loss      fidelity"]
        for k, v, f in zip(self.counts, self.losses, self.fidelities):
            mark = "  <- chosen" if k == self.count else ""
            rows.append(f"{k:7d}  {v:.6f}  {f:8.3f}{mark}")
        rows.append(f"  empty  {self.blank_loss:.6f}     0.000")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"count": self.count, "fidelity_target": self.fidelity, "blank_loss": self.blank_loss,
                "full_loss": self.full_loss,
                "curve": [{"strokes": k, "loss": v, "fidelity": f}
                          for k, v, f in zip(self.counts, self.losses, self.fidelities)],
                "removed": self.removed, "cancelled": self.cancelled, "seconds": self.seconds}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def auto_abstract(strokes: Strokes, target: torch.Tensor, encoder, fidelity: float = 0.9,
                  config: Optional[OptimizeConfig] = None, *, prune_iterations: int = 20,
                  min_strokes: int = 1, full_curve: bool = False, device=None,
                  callback: Optional[Callable[[int, float, Strokes], None]] = None,
                  should_stop: Optional[Callable[[], bool]] = None) -> AbstractionResult:
    """Prune an optimised sketch down to the fewest strokes that keep ``fidelity`` of its quality.

    strokes: the optimised sketch with a generous stroke budget (one candidate, or several with
      losses: the best is used). target: ``[3,H,W]`` 0..1, the picture it was optimised against.
    config: the optimiser settings (the loss terms used for every measurement, and the settings of
      the re-optimisation after each removal, which runs ``prune_iterations`` steps; 0 = no re-optimisation).
    full_curve: keep pruning down to ``min_strokes`` after the fidelity falls below the target (for the
      whole loss-versus-strokes curve); otherwise stop at the first count below it.
    callback(count, loss, sketch) after each count is measured; should_stop() is checked between and
      during the re-optimisations (True stops and chooses among the counts measured so far).
    """
    t0 = time.perf_counter()
    fidelity = _check_fidelity(fidelity)
    sketch = single_sketch(strokes)
    s = sketch.num_strokes
    if isinstance(min_strokes, bool) or not isinstance(min_strokes, int) or not 1 <= min_strokes <= s:
        raise AbstractionError(f"min_strokes must be a whole number from 1 to the sketch's {s} strokes; "
                               f"got {min_strokes!r}")
    if isinstance(prune_iterations, bool) or not isinstance(prune_iterations, int) or prune_iterations < 0:
        raise AbstractionError(f"prune_iterations must be a whole number >= 0; got {prune_iterations!r}")
    cfg = config or OptimizeConfig()
    reopt = reopt_config(cfg, prune_iterations)

    ends = torch.zeros(2, s, dtype=torch.bool)
    ends[1] = True
    blank, full = (float(v) for v in masked_losses(sketch, ends, target, encoder, cfg, device))
    if not (math.isfinite(blank) and math.isfinite(full)) or blank - full <= 1e-12 * max(1.0, abs(blank)):
        raise NoImprovementError(f"the sketch (loss {full:.6g}) is no closer to the picture than an empty canvas "
                               f"(loss {blank:.6g}), so there is no quality to keep; optimise it first "
                               "(more iterations or strokes)")

    def fid(loss):
        return (blank - loss) / (blank - full)

    current = sketch.replace(losses=torch.tensor([full]))
    ids = list(range(s))  # input index of each stroke of `current`
    counts, losses, sketches, removed = [s], [full], {s: current}, []
    if callback is not None:
        callback(s, full, current)
    cancelled = False
    while current.num_strokes > min_strokes:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        if not full_curve and fid(losses[-1]) < fidelity:
            break
        k = current.num_strokes
        trials = ~torch.eye(k, dtype=torch.bool)  # row j: every stroke but j
        without = masked_losses(current, trials, target, encoder, cfg, device)
        without = torch.where(torch.isfinite(without), without, torch.full_like(without, float("inf")))
        j = int(torch.argmin(without))  # the stroke whose absence costs least (first on ties)
        keep = [i for i in range(k) if i != j]
        removed.append(ids[j])
        ids = [ids[i] for i in keep]
        pruned = drop_strokes(current, keep)
        if prune_iterations > 0:
            run = optimize(pruned, target, encoder, reopt, device=device, should_stop=should_stop,
                           seeds=list(current.seeds or (0,)))
            current = run.strokes.select(0)
            loss = float(current.losses[0])
            cancelled = run.cancelled
        else:
            loss = float(without[j])
            current = pruned.replace(losses=torch.tensor([loss]))
        counts.append(k - 1)
        losses.append(loss)
        sketches[k - 1] = current
        if callback is not None:
            callback(k - 1, loss, current)
        if cancelled:
            break

    ok = [k for k, v in zip(counts, losses) if fid(v) >= fidelity - 1e-9]
    count = min(ok) if ok else s  # the full sketch always reaches fidelity 1
    return AbstractionResult(strokes=sketches[count], count=count, fidelity=fidelity, counts=counts,
                             losses=losses, blank_loss=blank, full_loss=full, sketches=sketches,
                             removed=removed, cancelled=cancelled, seconds=time.perf_counter() - t0)


def generous_budget(fidelity, max_strokes: Optional[int], strokes: int) -> int:
    """Stroke count to start pruning from: ``max_strokes``, or twice the requested count."""
    _check_fidelity(fidelity)
    n = 2 * int(strokes) if max_strokes is None else max_strokes
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise AbstractionError(f"max_strokes (the generous budget pruning starts from) must be a whole number "
                               f">= 2; got {max_strokes!r}")
    return n


def post_process(winner: Strokes, target: torch.Tensor, encoder, config: Optional[OptimizeConfig] = None, *,
                 fidelity: Optional[float] = None, prune_iterations: int = 20, order: bool = False,
                 device=None, should_stop: Optional[Callable[[], bool]] = None):
    """What `clipasso.pipeline.sketch` runs after best-of-N: prune to ``fidelity`` (if given), then
    put the strokes in greedy drawing order (if ``order``). Returns (strokes, AbstractionResult or
    None, OrderResult or None); progress goes to this module's logger."""
    abstraction = ordering = None
    if fidelity is not None:
        def report(k, loss, _):
            log.info("automatic abstraction: %d strokes, loss %.4f", k, loss)
        try:
            abstraction = auto_abstract(winner, target, encoder, fidelity, config,
                                        prune_iterations=prune_iterations, device=device, callback=report,
                                        should_stop=should_stop)
        except NoImprovementError as exc:  # keep the run's result rather than losing it
            warnings.warn(f"automatic abstraction skipped: {exc}", RuntimeWarning, stacklevel=2)
        else:
            winner = abstraction.strokes.replace(seeds=winner.seeds)
            log.info("automatic abstraction: chose %d strokes for fidelity %.2f", abstraction.count, fidelity)
    if order:
        from .order import greedy_order

        log.info("drawing order: ordering %d strokes", winner.num_strokes)
        ordering = greedy_order(winner, target, encoder, config, device=device, should_stop=should_stop)
        it = winner.iterations
        winner = ordering.strokes.replace(seeds=winner.seeds, iterations=it)
    return winner, abstraction, ordering


__all__ = ["auto_abstract", "post_process", "generous_budget", "AbstractionResult", "AbstractionError",
           "NoImprovementError",           "masked_losses", "single_sketch", "reopt_config",
           "drop_strokes", "eval_config"]
