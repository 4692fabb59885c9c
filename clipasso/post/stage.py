"""The post stage as `clipasso.pipeline.sketch` runs it after best-of-N: automatic abstraction, then the
drawing order (`post_process`). Scene mode (`clipasso.scene`) runs it once per layer."""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Optional

import torch

from ..settings import OptimizeConfig, SketchSettings
from ..strokes import Strokes

abstraction_log = logging.getLogger("clipasso.post.abstraction")  # progress of the post stage, as before
order_log = logging.getLogger("clipasso.post.order")


def post_process(
    winner: Strokes,
    target: torch.Tensor,
    encoder,
    config: Optional[OptimizeConfig] = None,
    settings=None,
    *,
    device=None,
    should_stop: Optional[Callable[[], bool]] = None,
    prior: Optional[torch.Tensor] = None,
    **overrides,
):
    """What `clipasso.pipeline.sketch` runs after best-of-N, as ``settings`` say (a `SketchSettings` or its
    `SelectSettings`; None: the defaults; ``overrides``: select fields on top, e.g. ``auto_strokes=0.9,
    abstraction_method="grow", drawing_order=True``): with ``auto_strokes`` set, automatic abstraction
    (`clipasso.post.abstraction.abstract`: prune the winner to that fidelity, or grow it up to the stroke
    budget and choose the count); then, with ``drawing_order``, the strokes in greedy drawing order. Returns
    (strokes, AbstractionResult or None, OrderResult or None); progress goes to this module's logger."""
    from ..settings import SelectSettings
    from .abstraction import NoImprovementError, abstract

    select = SelectSettings.of(settings, **overrides)
    whole = settings if isinstance(settings, SketchSettings) and not overrides else select
    abstraction = ordering = None
    fidelity, method = select.auto_strokes, select.abstraction_method
    if fidelity is not None:

        def report(k, loss, _):
            abstraction_log.info("automatic abstraction (%s): %d strokes, loss %.4f", method, k, loss)

        try:
            abstraction = abstract(
                winner,
                target,
                encoder,
                config,
                whole,
                prior=prior,
                device=device,
                callback=report,
                should_stop=should_stop,
            )
        except NoImprovementError as exc:  # keep the run's result rather than losing it
            warnings.warn(f"automatic abstraction skipped: {exc}", RuntimeWarning, stacklevel=2)
        else:
            winner = abstraction.strokes.replace(seeds=winner.seeds)
            abstraction_log.info(
                "automatic abstraction: chose %d strokes for fidelity %.2f", abstraction.count, fidelity
            )
    if select.drawing_order:
        from .order import greedy_order

        order_log.info("drawing order: ordering %d strokes", winner.num_strokes)
        ordering = greedy_order(winner, target, encoder, config, device=device, should_stop=should_stop)
        it = winner.iterations
        winner = ordering.strokes.replace(seeds=winner.seeds, iterations=it)
    return winner, abstraction, ordering


__all__ = ["post_process"]
