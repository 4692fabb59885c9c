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

Growing (`grow_abstract`) is the other way round: start from a few strokes and add one stroke per
stage where ink helps most, re-optimising all strokes for a few steps after each addition, until the
last strokes stop paying for themselves (or a budget is reached). There is no generous sketch to
measure against, so its fidelity is relative to the best loss growing reached:
``(L_blank - L_k) / (L_blank - min_j L_j)``. The two fidelities therefore have different references
and the same target can choose different counts; compare the losses, not the fidelities, across
methods. The grown strokes come out in the order they were added (a drawing order by construction).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..place.init import DEFAULT_RADIUS
from ..errors import OptimizeError
from ..objective import EVAL_CHUNK, objective_for
from ..optimize import OptimizeConfig, optimize
from ..settings import (
    ABSTRACTION_METHODS,
    DEFAULT_FIDELITY,
    PlaceSettings,
    SelectSettings,
    SettingsError,
    SketchSettings,
    field_option,
)
from .select import single_sketch
from ..errors import AbstractionError
from ..strokes import Strokes

log = logging.getLogger(__name__)


class NoImprovementError(AbstractionError):
    """The sketch is no closer to the picture than an empty canvas: there is no quality to keep."""


# --------------------------------------------------------------------------- shared helpers


def reopt_config(config: Optional[OptimizeConfig], iterations: int) -> OptimizeConfig:
    """Settings of a short re-optimisation of strokes that already have their colours."""
    cfg = config or OptimizeConfig()
    extra = {"color_from_image": False} if any(f.name == "color_from_image" for f in dataclasses.fields(cfg)) else {}
    return dataclasses.replace(
        cfg, iterations=int(iterations), eval_interval=max(1, min(cfg.eval_interval, max(1, int(iterations)))), **extra
    ).validate()


def masked_losses(
    sketch: Strokes,
    visible: torch.Tensor,
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    device=None,
    chunk: int = EVAL_CHUNK,
) -> torch.Tensor:
    """Eval loss of ``sketch`` (one candidate) with only some strokes drawn, for many stroke subsets
    (`clipasso.objective.Objective.masked`; ``encoder`` may be the objective itself).

    visible: ``[N, S]`` bool, one row per subset (False = the stroke is made fully transparent).
    Returns ``[N]`` float losses on the CPU. An all-False row measures the empty canvas.
    """
    objective = objective_for(target, encoder, config, device, sketch.canvas)
    try:
        return objective.masked(sketch, visible, chunk)
    except OptimizeError as exc:
        raise AbstractionError(str(exc)) from None


def drop_strokes(sketch: Strokes, keep: Sequence[int]) -> Strokes:
    """``sketch`` (one candidate) with only the strokes at ``keep`` (in that order)."""
    idx = torch.as_tensor(list(keep), dtype=torch.long)
    return Strokes(
        sketch.points[:, idx], sketch.widths[:, idx], sketch.colors[:, idx], sketch.canvas, seeds=sketch.seeds
    )


def _check_fidelity(fidelity) -> float:
    """The fidelity target, checked as the settings check ``auto_strokes`` (None is no target here)."""
    opt = field_option("auto_strokes")
    msg = opt.problem("fidelity", fidelity) if fidelity is not None else f"fidelity must be {opt.meaning}; got None"
    if msg:
        raise SettingsError(msg)
    return float(fidelity)


def _check_count(name: str, value, lo: int, what: str) -> int:
    """A count argument of a search (not a setting): a whole number >= ``lo``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise AbstractionError(f"{name} must be a whole number >= {lo} ({what}); got {value!r}")
    return value


# --------------------------------------------------------------------------- pruning


@dataclass
class AbstractionResult:
    strokes: Strokes  # the chosen sketch (one candidate, `count` strokes, with its loss)
    count: int  # chosen stroke count
    fidelity: float  # the target asked for
    counts: List[int]  # stroke counts measured, in the order measured (down when pruning, up
    # when growing)
    losses: List[float]  # eval loss at each count
    blank_loss: float  # eval loss of the empty canvas
    full_loss: float  # reference of fidelity 1: the input (generous) sketch's loss when
    # pruning, the best loss reached when growing
    sketches: Dict[int, Strokes] = field(default_factory=dict)  # the sketch reached at each count
    removed: List[int] = field(default_factory=list)  # input stroke indices in the order they were pruned
    cancelled: bool = False
    seconds: float = 0.0
    method: str = "prune"  # "prune" (auto_abstract) or "grow" (grow_abstract)
    stop_reason: str = ""  # why the search stopped (see auto_abstract / grow_abstract)

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
        return {
            "count": self.count,
            "fidelity_target": self.fidelity,
            "blank_loss": self.blank_loss,
            "full_loss": self.full_loss,
            "curve": [
                {"strokes": k, "loss": v, "fidelity": f} for k, v, f in zip(self.counts, self.losses, self.fidelities)
            ],
            "removed": self.removed,
            "cancelled": self.cancelled,
            "seconds": self.seconds,
            "method": self.method,
            "stop_reason": self.stop_reason,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def auto_abstract(
    strokes: Strokes,
    target: torch.Tensor,
    encoder,
    fidelity: float = DEFAULT_FIDELITY,
    config: Optional[OptimizeConfig] = None,
    settings: Optional[SelectSettings] = None,
    *,
    min_strokes: int = 1,
    full_curve: bool = False,
    device=None,
    callback: Optional[Callable[[int, float, Strokes], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    **overrides,
) -> AbstractionResult:
    """Prune an optimised sketch down to the fewest strokes that keep ``fidelity`` of its quality.

    strokes: the optimised sketch with a generous stroke budget (one candidate, or several with
      losses: the best is used). target: ``[3,H,W]`` 0..1, the picture it was optimised against.
    config: the optimiser settings (the loss terms used for every measurement, and the settings of
      the re-optimisation after each removal). settings: a `SelectSettings` (None: the defaults; or a
      whole `SketchSettings`) with ``overrides`` of its fields on top, e.g. ``prune_iterations=0``: the
      re-optimisation after each removal runs ``prune_iterations`` steps (0 = none).
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
        raise AbstractionError(
            f"min_strokes must be a whole number from 1 to the sketch's {s} strokes; got {min_strokes!r}"
        )
    prune_iterations = SelectSettings.of(settings, **overrides).prune_iterations
    cfg = config or OptimizeConfig()
    reopt = reopt_config(cfg, prune_iterations)
    objective = objective_for(target, encoder, cfg, device, sketch.canvas)  # one loss object for every measurement

    ends = torch.zeros(2, s, dtype=torch.bool)
    ends[1] = True
    blank, full = (float(v) for v in objective.masked(sketch, ends))
    if not (math.isfinite(blank) and math.isfinite(full)) or blank - full <= 1e-12 * max(1.0, abs(blank)):
        raise NoImprovementError(
            f"the sketch (loss {full:.6g}) is no closer to the picture than an empty canvas "
            f"(loss {blank:.6g}), so there is no quality to keep; optimise it first "
            "(more iterations or strokes)"
        )

    def fid(loss):
        return (blank - loss) / (blank - full)

    current = sketch.replace(losses=torch.tensor([full]))
    ids = list(range(s))  # input index of each stroke of `current`
    counts, losses, sketches, removed = [s], [full], {s: current}, []
    if callback is not None:
        callback(s, full, current)
    cancelled = False
    reason = "min_strokes"
    while current.num_strokes > min_strokes:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        if not full_curve and fid(losses[-1]) < fidelity:
            reason = "fidelity"
            break
        k = current.num_strokes
        trials = ~torch.eye(k, dtype=torch.bool)  # row j: every stroke but j
        without = objective.masked(current, trials)
        without = torch.where(torch.isfinite(without), without, torch.full_like(without, float("inf")))
        j = int(torch.argmin(without))  # the stroke whose absence costs least (first on ties)
        keep = [i for i in range(k) if i != j]
        removed.append(ids[j])
        ids = [ids[i] for i in keep]
        pruned = drop_strokes(current, keep)
        if prune_iterations > 0:
            run = optimize(pruned, None, objective, reopt, should_stop=should_stop, seeds=list(current.seeds or (0,)))
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
    return AbstractionResult(
        strokes=sketches[count],
        count=count,
        fidelity=fidelity,
        counts=counts,
        losses=losses,
        blank_loss=blank,
        full_loss=full,
        sketches=sketches,
        removed=removed,
        cancelled=cancelled,
        seconds=time.perf_counter() - t0,
        method="prune",
        stop_reason="cancelled" if cancelled else reason,
    )


# --------------------------------------------------------------------------- growing

PLACEMENT_TEMPERATURE = 0.1  # softmax temperature over the normalised ink-benefit map (lower = greedier)
WASH = 0.02  # ink share of the faint wash the benefit is measured under


def ink_benefit(
    sketch: Strokes,
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    device=None,
    pen: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """``[H,W]`` >= 0: how much a little ink of the pen's colour at each pixel would lower the eval loss.

    The render ``I`` of ``sketch`` (one candidate) is differentiated: inking a pixel by ``da`` moves it to
    ``I + (pen - I) da``, so the loss falls by ``-sum_c dL/dI_c (pen_c - I_c) da``. Only the positive part
    is kept (ink that would raise the loss is no help); the derivative is taken under a faint wash of
    ink (``WASH``) over the render, since on pure white paper the trace loss clamps its ink at 0 and
    would show no gradient. The map is box-averaged over about a new stroke's
    reach, so the map points at regions of missing ink, not at single noisy pixels. Works for every loss
    the optimiser has (CLIP, trace, both). ``pen``: RGB of the ink (default black).
    """
    from ..render.raster import render

    sketch = single_sketch(sketch, "ink_benefit")
    h, w = sketch.canvas
    loss_fn = objective_for(target, encoder, config, device, (h, w))
    dev = loss_fn.device
    ink = torch.as_tensor(list(pen) if pen is not None else [0.0, 0.0, 0.0], dtype=torch.float32, device=dev).view(
        1, 3, 1, 1
    )
    with torch.enable_grad():
        with torch.no_grad():
            image = render(
                sketch.to(dev),
                background=getattr(loss_fn.settings, "background", (1.0, 1.0, 1.0)),
                backend=getattr(loss_fn.settings, "renderer", "auto"),
            ).image.float()
            # measured under a faint wash of ink: on pure paper a loss may clamp its ink at 0 and pass
            # no gradient there (the trace loss does)
            image = image + WASH * (ink - image)
        image = image.detach().clone().requires_grad_(True)
        total = loss_fn.eval_loss(image)["total"].sum()
        (grad,) = torch.autograd.grad(total, image)
    gain = (-(grad * (ink - image.detach())).sum(1, keepdim=True)).clamp(min=0)  # [1,1,H,W]
    reach = max(3, 2 * int(round(DEFAULT_RADIUS * max(h, w) / 2)) + 1)  # odd window of about a stroke's size
    gain = torch.nn.functional.avg_pool2d(gain, reach, stride=1, padding=reach // 2, count_include_pad=False)
    gain = gain[0, 0, :h, :w].float().cpu()
    return torch.where(torch.isfinite(gain), gain, torch.zeros_like(gain))


def _pen(sketch: Strokes):
    """(half-width, RGBA) of a new stroke: the median of the sketch's strokes (its pen)."""
    return float(sketch.widths[0].median()), sketch.colors[0].median(dim=0).values


def _place_candidates(
    benefit: torch.Tensor, n: int, num_segments: int, gen: torch.Generator, prior: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``[n, 1+3k, 2]`` new strokes: CLIPasso squiggles started at the best pixel of ``benefit * prior``
    and at ``n - 1`` pixels drawn from its softmax (without replacement); uniform where the map is empty."""
    from ..place.init import random_walk, start_probabilities

    h, w = benefit.shape
    m = benefit if prior is None else benefit * prior
    top = float(m.max())
    if not top > 0:  # no pixel where ink helps (or the prior rules them all out): anywhere on the prior
        m = prior if prior is not None and float(prior.max()) > 0 else torch.ones(h, w)
        top = float(m.max())
    probs = start_probabilities(m / top, PLACEMENT_TEMPERATURE).reshape(-1).double()
    first = int(torch.argmax(m))
    probs[first] = 0
    rest = min(n - 1, int((probs > 0).sum()))
    picks = [first] + (torch.multinomial(probs, rest, replacement=False, generator=gen).tolist() if rest else [])
    while len(picks) < n:  # tiny maps: repeat pixels (the random walks still differ)
        picks.append(picks[len(picks) % max(1, rest + 1)])
    flat = torch.as_tensor(picks, dtype=torch.long)
    starts = torch.stack([(flat % w).float() + 0.5, (flat // w).float() + 0.5], dim=-1)
    return random_walk(starts, num_segments, DEFAULT_RADIUS, (h, w), gen)


def reached_plateau(
    losses: Sequence[float], blank: float, min_gain: float = SelectSettings.min_gain, patience: int = 2
) -> bool:
    """Growing's stopping rule on the losses measured so far (one per stage, in order): each of the last
    ``patience`` stages lowered the loss by less than ``min_gain`` times ``blank - min(losses)``."""
    if len(losses) <= patience:
        return False
    total = blank - min(losses)
    if not total > 0:
        return False
    gains = [a - b for a, b in zip(losses[-patience - 1 : -1], losses[-patience:])]
    return all(g < min_gain * total for g in gains)


def grow_abstract(
    start: Strokes,
    target: torch.Tensor,
    encoder,
    fidelity: float = DEFAULT_FIDELITY,
    config: Optional[OptimizeConfig] = None,
    settings: Optional[SelectSettings] = None,
    *,
    start_strokes: Optional[int] = None,
    candidates: int = 8,
    patience: int = 2,
    full_curve: bool = False,
    prior: Optional[torch.Tensor] = None,
    device=None,
    callback: Optional[Callable[[int, float, Strokes], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    **overrides,
) -> AbstractionResult:
    """Grow a sketch from a few strokes, one stroke per stage, and choose the count for ``fidelity``.

    settings: a `SelectSettings` (None: the defaults; or a whole `SketchSettings`) with ``overrides`` of
      its fields on top: ``max_strokes`` (None: twice the stroke count -- the settings' ``strokes`` when a
      `SketchSettings` is given, else the default's), ``grow_iterations`` and ``min_gain``.

    start: the sketch to grow from (one candidate, or several with losses: the best is used); its first
      ``start_strokes`` strokes (None: all) are kept, in order, and give the canvas and the pen (new
      strokes take the median width and colour of these; with ``config.color_from_image`` the colour
      of the picture under them instead). target: ``[3,H,W]`` 0..1.
    Each stage: the ink-benefit map (`ink_benefit`, times ``prior`` [H,W] >= 0 when given, e.g. a
      saliency map) proposes ``candidates`` new strokes (CLIPasso squiggles at its best pixel and at
      pixels drawn from its softmax); the one whose addition gives the lowest eval loss is appended,
      then all strokes are re-optimised for ``grow_iterations`` steps (0 = none) with ``config``.
    Stopping: at ``max_strokes``, or (unless ``full_curve``) when each of the last ``patience`` stages
      lowered the loss by less than ``min_gain`` times the total improvement so far (empty canvas minus
      the best loss reached) -- a plateau.
    Fidelity: ``(L_blank - L_k) / (L_blank - L_best)`` with ``L_best`` the lowest loss reached (stored as
      ``full_loss``); the chosen count is the smallest measured count reaching ``fidelity``. Unlike
      pruning, the reference is the grown sketch itself, so growing has to reach its plateau before it
      can choose (it cannot stop at the fidelity).
    Order: stroke i of every grown sketch is the i-th stroke placed, so the strokes are in drawing
      order. With ``grow_iterations=0`` the sketch of k strokes is exactly the first k strokes of every
      larger one; with re-optimisation those strokes keep their places in the order but move a little.
    callback(count, loss, sketch) after each count is measured; should_stop() is checked between stages
      and during the re-optimisations (True stops and chooses among the counts measured so far).
    """
    t0 = time.perf_counter()
    fidelity = _check_fidelity(fidelity)
    sketch = single_sketch(start, "growing")
    n_in = sketch.num_strokes
    if start_strokes is not None:
        msg = field_option("start_strokes").problem("start_strokes", start_strokes)
        if msg:
            raise SettingsError(msg)
        if start_strokes > n_in:
            raise AbstractionError(
                f"start_strokes is {start_strokes} but the starting sketch has only {n_in} "
                "strokes; ask for fewer or give a sketch with more"
            )
        sketch = drop_strokes(sketch, range(start_strokes))
    k0 = sketch.num_strokes
    chosen = (SelectSettings.of(settings) if settings is not None else SelectSettings()).replace(**overrides)
    max_strokes = chosen.max_strokes
    if isinstance(max_strokes, int) and not isinstance(max_strokes, bool) and max_strokes <= k0:
        raise AbstractionError(
            f"max_strokes ({max_strokes}) must be larger than the {k0} strokes growing starts "
            "from; raise max_strokes or start from fewer strokes"
        )
    chosen.validate()
    if max_strokes is None:  # twice the stroke count (not a setting's bound: 2 x 1024 may pass 1024)
        max_strokes = 2 * int(settings.strokes if isinstance(settings, SketchSettings) else PlaceSettings().strokes)
    grow_iterations, min_gain = chosen.grow_iterations, chosen.min_gain
    _check_count("candidates", candidates, 1, "places tried for each new stroke")
    _check_count("patience", patience, 1, "stages of small gain before growing stops")
    h, w = sketch.canvas
    if prior is not None:
        prior = torch.as_tensor(prior).detach().float().cpu()
        while prior.ndim > 2 and prior.shape[0] == 1:
            prior = prior[0]
        if tuple(prior.shape) != (h, w) or not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()):
            raise AbstractionError(
                f"prior must be a finite map >= 0 of the canvas size {h}x{w} (e.g. the saliency "
                f"map); got shape {tuple(prior.shape)}"
            )
    cfg = config or OptimizeConfig()
    reopt = reopt_config(cfg, grow_iterations)
    objective = objective_for(target, encoder, cfg, device, sketch.canvas)  # one loss object for every measurement
    seed = int(sketch.seeds[0]) if sketch.seeds else 0
    half_width, color = _pen(sketch)

    blank, first = (float(v) for v in objective.masked(sketch, torch.tensor([[False] * k0, [True] * k0])))
    if not math.isfinite(blank):
        raise AbstractionError(f"the empty canvas has a non-finite loss ({blank}); check the target and the models")
    current = sketch.replace(losses=torch.tensor([first]), seeds=(seed,))
    counts, losses, sketches = [k0], [first], {k0: current}
    if callback is not None:
        callback(k0, first, current)

    cancelled, reason = False, "max_strokes"
    while current.num_strokes < max_strokes:
        if should_stop is not None and should_stop():
            cancelled = True
            break
        if not full_curve and reached_plateau(losses, blank, min_gain, patience):
            reason = "plateau"
            break
        k = current.num_strokes
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k)
        benefit = ink_benefit(current, target, objective, pen=color[:3].tolist())
        new = _place_candidates(benefit, candidates, current.num_segments, gen, prior)  # [n, P, 2]
        n = new.shape[0]
        new_colors = color.view(1, 1, 4).expand(n, 1, 4)
        if cfg.color_from_image:  # each candidate takes the picture's colour under it, as the first strokes did
            from ..optimize.style import colors_from_image

            alone = Strokes(new.unsqueeze(1), torch.full((n, 1), half_width), new_colors.clone(), current.canvas)
            new_colors = colors_from_image(alone, target, background=cfg.background).colors.to(color.dtype)
        trial = Strokes(
            torch.cat([current.points.expand(n, -1, -1, -1), new.unsqueeze(1)], 1),
            torch.cat([current.widths.expand(n, -1), torch.full((n, 1), half_width)], 1),
            torch.cat([current.colors.expand(n, -1, -1), new_colors], 1),
            current.canvas,
        )
        tried = torch.cat(
            [objective.evaluate(trial.select(list(range(i, min(n, i + EVAL_CHUNK))))) for i in range(0, n, EVAL_CHUNK)]
        )
        tried = torch.where(torch.isfinite(tried), tried, torch.full_like(tried, float("inf")))
        j = int(torch.argmin(tried))
        grown = trial.select(j).replace(losses=tried[j : j + 1], seeds=(seed,))
        if grow_iterations > 0:
            run = optimize(grown, None, objective, reopt, should_stop=should_stop, seeds=[seed])
            current = run.strokes.select(0).replace(seeds=(seed,))
            cancelled = run.cancelled
        else:
            current = grown
        loss = float(current.losses[0])
        counts.append(k + 1)
        losses.append(loss)
        sketches[k + 1] = current
        if callback is not None:
            callback(k + 1, loss, current)
        if cancelled:
            break

    best = min(losses)
    if not math.isfinite(best) or blank - best <= 1e-12 * max(1.0, abs(blank)):
        raise NoImprovementError(
            f"growing to {counts[-1]} strokes got no closer to the picture (best loss "
            f"{best:.6g}) than an empty canvas (loss {blank:.6g}), so there is no quality to "
            "keep; try more grow_iterations, a higher learning rate or another loss"
        )
    ok = [k for k, v in zip(counts, losses) if (blank - v) / (blank - best) >= fidelity - 1e-9]
    count = min(ok)  # the best count always reaches fidelity 1
    return AbstractionResult(
        strokes=sketches[count],
        count=count,
        fidelity=fidelity,
        counts=counts,
        losses=losses,
        blank_loss=blank,
        full_loss=best,
        sketches=sketches,
        removed=[],
        cancelled=cancelled,
        seconds=time.perf_counter() - t0,
        method="grow",
        stop_reason="cancelled" if cancelled else reason,
    )


METHODS = ABSTRACTION_METHODS  # the settings' list (abstraction_method)


def abstract(
    strokes: Strokes,
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    settings=None,
    *,
    fidelity: Optional[float] = None,
    start_strokes: Optional[int] = None,
    full_curve: bool = False,
    prior: Optional[torch.Tensor] = None,
    device=None,
    callback: Optional[Callable[[int, float, Strokes], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    **overrides,
) -> AbstractionResult:
    """Automatic abstraction as the settings say: prune (`auto_abstract`) or grow (`grow_abstract`) by
    ``abstraction_method``, to ``fidelity`` (None: the settings' ``auto_strokes``, else 0.9).

    settings: a `SelectSettings` or a whole `SketchSettings` (None: the defaults), with ``overrides`` of
    the select fields on top. ``start_strokes`` and ``prior`` are growing's (see `grow_abstract`); the
    pipeline (`clipasso.pipeline.post_process`) and the Auto Abstraction node both come through here."""
    select = settings.select if isinstance(settings, SketchSettings) else settings or SelectSettings()
    method = overrides.get("abstraction_method", select.abstraction_method)
    msg = field_option("abstraction_method").problem("abstraction_method", method)
    if msg:
        raise SettingsError(msg)
    if fidelity is None:
        fidelity = overrides.get("auto_strokes", select.auto_strokes)
        fidelity = DEFAULT_FIDELITY if fidelity is None else fidelity
    common = dict(full_curve=full_curve, device=device, callback=callback, should_stop=should_stop)
    if method == "grow":
        return grow_abstract(
            strokes,
            target,
            encoder,
            fidelity,
            config,
            settings,
            start_strokes=start_strokes,
            prior=prior,
            **common,
            **overrides,
        )
    return auto_abstract(strokes, target, encoder, fidelity, config, settings, **common, **overrides)


__all__ = [
    "abstract",
    "auto_abstract",
    "grow_abstract",
    "ink_benefit",
    "reached_plateau",
    "METHODS",
    "AbstractionResult",
    "AbstractionError",
    "NoImprovementError",
    "masked_losses",
    "reopt_config",
    "drop_strokes",
]
