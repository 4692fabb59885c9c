"""Best-of-N: the candidate whose best clean-view loss is lowest wins (CLIPasso's selection rule)."""

from __future__ import annotations

from typing import Tuple

import torch

from ..errors import AbstractionError
from ..strokes import StrokeError, Strokes


def select_best(strokes: Strokes) -> Tuple[Strokes, int]:
    """(winner as a one-candidate Strokes, its index). Needs per-candidate ``losses``.

    Non-finite losses never win; ties go to the first candidate (the lowest seed as run).
    """
    if not isinstance(strokes, Strokes):
        raise StrokeError(f"select_best needs a Strokes value; got {type(strokes).__name__}")
    if strokes.losses is None:
        raise StrokeError(
            "these strokes carry no losses, so there is nothing to choose by; "
            "run the optimiser first (it records each candidate's best loss)"
        )
    losses = strokes.losses.detach().float().cpu()
    finite = torch.isfinite(losses)
    if not bool(finite.any()):
        raise StrokeError("every candidate's loss is NaN or infinite; the optimisation failed for all seeds")
    masked = torch.where(finite, losses, torch.full_like(losses, float("inf")))
    index = int(torch.argmin(masked))  # argmin returns the first of equal minima
    return strokes.select(index), index


def single_sketch(strokes: Strokes, what: str = "automatic abstraction") -> Strokes:
    """One sketch out of ``strokes``: itself if it has one candidate, else the lowest-loss candidate."""
    if not isinstance(strokes, Strokes):
        raise AbstractionError(f"{what} needs a clipasso Strokes value; got {type(strokes).__name__}")
    if strokes.num_candidates == 1:
        return strokes.cpu()
    if strokes.losses is None:
        raise AbstractionError(
            f"{what} works on one sketch, but these strokes hold {strokes.num_candidates} "
            "candidates and no losses to pick the best by; select one candidate first "
            "(Select Best, or Strokes.select)"
        )
    return select_best(strokes)[0].cpu()


def rank(strokes: Strokes) -> list:
    """Candidate indices from best to worst loss."""
    if strokes.losses is None:
        raise StrokeError("these strokes carry no losses to rank by; run the optimiser first")
    losses = strokes.losses.detach().float().cpu()
    losses = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, float("inf")))
    return [int(i) for i in torch.sort(losses, stable=True).indices]


__all__ = ["select_best", "single_sketch", "rank"]
