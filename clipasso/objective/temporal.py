"""The temporal term of a video frame: each control point near where the optical flow took it.

For frame i the warm start is frame i-1's strokes with every control point moved by the flow between the
two frames (`clipasso.video.flow.move_points`); those moved points are the term's ``anchor``. The term is

    temporal = weight * mean over strokes s and control points p of |x_sp - anchor_sp|^2 / u^2

per candidate (a NaN anchor marks a free point, which counts as distance 0: a stroke placed again), with
u = canvas side / 224: distances count in pixels of CLIPasso's 224-pixel canvas, so a weight means the same
at any canvas size. The sketch losses change by about 0.01 to 0.05 when a frame's strokes are refined, so
the video default 0.03 lets a stroke drift a fraction of a pixel from its flow-moved place when that pays
(bench/video.py measures the trade: tracking and stillness against the frame's loss). The term is
deterministic: its training and evaluation values are equal.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch

from ..errors import OptimizeError

REFERENCE_SIDE = 224.0  # distances are measured in pixels of this canvas side


class TemporalTerm:
    """``weight`` x mean squared distance of the control points from ``anchor`` ``[B or 1,S,P,2]``."""

    def __init__(self, anchor, weight: float, canvas=(224, 224), device=None):
        if anchor is None:
            raise OptimizeError("the temporal term needs anchor points [B,S,P,2] (the flow-moved previous frame)")
        anchor = torch.as_tensor(anchor, dtype=torch.float32)
        if anchor.ndim == 3:
            anchor = anchor.unsqueeze(0)
        if anchor.ndim != 4 or anchor.shape[-1] != 2:
            raise OptimizeError(f"the temporal term's anchor must be [B,S,P,2]; got {tuple(anchor.shape)}")
        if bool(torch.isinf(anchor).any()):
            raise OptimizeError("the temporal term's anchor points contain infinite values (NaN marks a free point)")
        if not (weight >= 0 and weight == weight and weight != float("inf")):
            raise OptimizeError(f"the temporal weight must be a finite number >= 0; got {weight!r}")
        anchor = anchor.detach().to(device if device is not None else anchor.device)
        self.held = torch.isfinite(anchor).all(-1).float()  # [B,S,P] 0 where the anchor is NaN: a free point
        self.anchor = torch.nan_to_num(anchor, nan=0.0)
        self.weight = float(weight)
        self.unit = max(float(max(canvas)), 1.0) / REFERENCE_SIDE

    def value(self, points: torch.Tensor) -> torch.Tensor:
        """``[B]`` the term of control points ``[B,S,P,2]``."""
        if points.shape[1:] != self.anchor.shape[1:]:
            raise OptimizeError(
                f"the temporal term's anchor has {self.anchor.shape[1]} strokes of {self.anchor.shape[2]} points "
                f"but the sketch has {points.shape[1]} of {points.shape[2]}"
            )
        anchor, held = self.anchor.to(points.device), self.held.to(points.device)
        if anchor.shape[0] != points.shape[0]:
            if anchor.shape[0] != 1:
                raise OptimizeError(
                    f"the temporal term has {anchor.shape[0]} anchors for {points.shape[0]} candidates; give one "
                    "anchor, or one per candidate"
                )
            anchor, held = anchor.expand_as(points), held.expand(points.shape[:-1])
        d2 = ((points.float() - anchor) / self.unit).pow(2).sum(-1) * held  # [B,S,P]
        return self.weight * d2.flatten(1).mean(1)

    def eval_loss(self, points: torch.Tensor) -> Dict[str, torch.Tensor]:
        v = self.value(points)
        return {"total": v}

    def train_loss(self, points: torch.Tensor, generators: Sequence[torch.Generator] = ()) -> Dict[str, torch.Tensor]:
        return self.eval_loss(points)


__all__ = ["TemporalTerm", "REFERENCE_SIDE"]
