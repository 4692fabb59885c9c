"""Drawing order: strokes ordered so that every prefix is the best sketch of its size.

CLIPasso places all strokes at once; a person draws one after another, the big shapes first. The
greedy order starts from the empty canvas and repeatedly adds the stroke that lowers the eval loss
most (every remaining stroke tried, all of them as one batch with the others made transparent), so
the first stroke alone is the best one-stroke sketch among the strokes, the first two the best
pair containing it, and so on. Cost: S(S+1)/2 sketch evaluations for S strokes, in batches.

Outputs: the reordered strokes and the loss of every prefix (``[S+1]``, the empty canvas first); the
drawing being made stroke by stroke (frames, animated SVG, GIF) is `clipasso.output.animation`'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

from ..errors import AbstractionError
from ..objective import objective_for
from .select import single_sketch
from ..settings import OptimizeConfig
from ..strokes import Strokes


@dataclass
class OrderResult:
    strokes: Strokes  # the sketch with its strokes in drawing order (one candidate)
    order: List[int]  # input stroke index of each position
    prefix_losses: torch.Tensor  # [S+1] eval loss after 0, 1, ..., S strokes (0 = empty canvas)
    seconds: float = 0.0

    def table(self) -> str:
        rows = ["strokes  loss      added stroke"]
        for k, v in enumerate(self.prefix_losses.tolist()):
            rows.append(f"{k:7d}  {v:.6f}  {'-' if k == 0 else self.order[k - 1]}")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"order": self.order, "prefix_losses": [float(v) for v in self.prefix_losses], "seconds": self.seconds}


def reorder(sketch: Strokes, order: Sequence[int]) -> Strokes:
    """``sketch`` with its strokes in ``order`` (a permutation of its stroke indices)."""
    order = [int(i) for i in order]
    if sorted(order) != list(range(sketch.num_strokes)):
        raise AbstractionError(f"order must be a permutation of 0..{sketch.num_strokes - 1}; got {order}")
    idx = torch.as_tensor(order, dtype=torch.long, device=sketch.device)
    return sketch.replace(points=sketch.points[:, idx], widths=sketch.widths[:, idx], colors=sketch.colors[:, idx])


def prefix_losses(
    strokes: Strokes,
    order: Optional[Sequence[int]],
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    device=None,
) -> torch.Tensor:
    """Eval loss ``[S+1]`` after the first 0, 1, ..., S strokes of ``order`` (None: the strokes' own order)."""
    sketch = single_sketch(strokes, "prefix_losses")
    s = sketch.num_strokes
    if order is not None:
        sketch = reorder(sketch, order)
    visible = torch.arange(s).unsqueeze(0) < torch.arange(s + 1).unsqueeze(1)  # row k: first k strokes
    return objective_for(target, encoder, config, device, sketch.canvas).masked(sketch, visible)


def greedy_order(
    strokes: Strokes,
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    *,
    device=None,
    callback: Optional[Callable[[int, int, float], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> OrderResult:
    """Order the strokes of one sketch greedily by eval loss (see the module docstring).

    strokes: one candidate (or several with losses: the best is used). target: ``[3,H,W]`` 0..1.
    config: the optimiser settings whose eval loss is used (default `OptimizeConfig()`).
    callback(position, stroke, loss) after each pick; should_stop() is checked before each pick
    (True stops: the strokes not yet placed keep their relative order at the end).
    """
    t0 = time.perf_counter()
    sketch = single_sketch(strokes, "drawing order")
    objective = objective_for(target, encoder, config, device, sketch.canvas)  # one loss object for every pick
    s = sketch.num_strokes
    placed: List[int] = []
    remaining = list(range(s))
    while remaining:
        if should_stop is not None and should_stop():
            break
        if len(remaining) == 1:
            pick = remaining[0]
        else:
            rows = torch.zeros(len(remaining), s, dtype=torch.bool)
            if placed:
                rows[:, placed] = True
            rows[torch.arange(len(remaining)), torch.as_tensor(remaining)] = True
            losses = objective.masked(sketch, rows)
            losses = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, float("inf")))
            best = int(torch.argmin(losses))  # the lowest input index wins ties
            pick = remaining[best]
            if callback is not None:
                callback(len(placed), pick, float(losses[best]))
        placed.append(pick)
        remaining.remove(pick)
    order = placed + remaining
    ordered = reorder(sketch, order)
    # Measured again on the reordered strokes: with strokes of different colours the compositing order
    # changes the picture a little, and this is the drawing that is output.
    losses = prefix_losses(ordered, None, target, objective)
    ordered = ordered.replace(losses=losses[-1:].clone())
    return OrderResult(strokes=ordered, order=order, prefix_losses=losses, seconds=time.perf_counter() - t0)


def order_json(result: OrderResult) -> str:
    return json.dumps(result.to_dict(), indent=1)


__all__ = ["greedy_order", "OrderResult", "prefix_losses", "reorder", "order_json"]
