"""The objective: one loss object per target, built from named, weighted terms.

    total = sum over the enabled terms of  weight(term) * term.total        (per candidate)

The optimiser, best-of-N selection, pruning, growing and the drawing order all measure sketches with
the same `Objective`, built once per target from the `ObjectiveSettings` (and the drawing fields of the
optimiser: background and pen). Terms are registered by name in `TERMS`:

    clip    CLIPasso's loss (`clipasso.objective.losses.CLIPassoLoss`): geometric distances of intermediate CLIP
            layers (``layer_weights`` x ``geometric_weight``) + ``semantic_weight`` x embedding distance
            (+ ``text_weight`` x distance to the ``text`` prompt's embedding), over the clean view and
            ``num_augs`` augmented views; on with loss "clip" and "clip+trace".
    trace   the weights-free image-space loss (`clipasso.objective.losses.TraceLoss`); alone with loss "trace",
            with weight ``trace_weight`` under "clip+trace".

    temporal  the video term (`clipasso.objective.temporal.TemporalTerm`): control points near where the optical
            flow moved the previous frame's; on when the objective is built with an ``anchor`` in its context
            (``Objective.build(..., context={"anchor": points, "temporal_weight": w})``).

Adding a term is one module with a ``build(settings, encoder, target, device)`` returning an object
with ``eval_loss(images)`` / ``train_loss(images, generators)`` (dicts of per-candidate tensors with a
``total``), one settings field for its weight, and one `register_term` call. A term that needs data
besides the settings (a video frame's anchor points) names the context keys it ``needs``: it is built
only when the objective's context has them, and ``build`` gets them as keyword arguments. A term on the
stroke geometry rather than the picture (``inputs="points"``) gets the control points ``[B,S,P,2]`` in
place of the renders: ``eval_loss(points)`` / ``train_loss(points, generators)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..device import amp_dtype, eval_amp_dtype
from ..errors import OptimizeError
from ..strokes import Strokes, pen_half_width

EVAL_CHUNK = 16  # sketches evaluated per encoder batch (bounds memory)


@dataclass(frozen=True)
class Term:
    name: str
    enabled: Callable  # settings -> bool
    weight: Callable  # settings -> float
    build: Callable  # (settings, encoder, target, device, **context) -> loss object
    needs_encoder: bool = False
    needs: Tuple[str, ...] = ()  # context keys the term is built from (it is off without them)
    inputs: str = "images"  # what its losses take: the renders ("images") or the control points ("points")


TERMS: Dict[str, Term] = {}
TERM_INPUTS = ("images", "points")


def register_term(
    name: str, build, weight, enabled, needs_encoder: bool = False, needs: Sequence[str] = (), inputs: str = "images"
) -> None:
    """Add a loss term by name (see the module docstring); later terms add to the total after earlier ones."""
    if inputs not in TERM_INPUTS:
        raise ValueError(f"a term's inputs are one of {', '.join(TERM_INPUTS)}; got {inputs!r}")
    TERMS[name] = Term(name, enabled, weight, build, needs_encoder, tuple(needs), inputs)


# --------------------------------------------------------------------------- the built-in terms


def _text_guidance(encoder, settings) -> Dict:
    """CLIPassoLoss keyword arguments of the text term (none without a prompt)."""
    from .text import TextGuidanceError, check_prompt, encode_text

    prompt = check_prompt(settings.text)
    if prompt is None or settings.text_weight == 0:
        return {}
    try:
        return dict(text_embedding=encode_text(encoder, prompt), text_weight=float(settings.text_weight))
    except TextGuidanceError as exc:
        raise OptimizeError(str(exc)) from None


def _build_clip(settings, encoder, target, device):
    from .losses import CLIPassoLoss

    from ..settings import ObjectiveSettings

    amp = amp_dtype(settings.mixed_precision, device)
    if not isinstance(settings, ObjectiveSettings):  # anything with the objective's fields
        settings = ObjectiveSettings(
            **{f.name: getattr(settings, f.name) for f in dataclasses.fields(ObjectiveSettings)}
        )
    no_pool = {} if settings.num_augs else {"aug_pool": 0}  # no views: no pool to draw them from
    return CLIPassoLoss(
        encoder,
        target,
        settings,
        amp_dtype=amp,
        eval_amp_dtype=eval_amp_dtype(amp),
        **no_pool,
        **_text_guidance(encoder, settings),
    )


def _build_trace(settings, encoder, target, device):
    from .losses import TraceLoss

    return TraceLoss(target, settings, device=device)


register_term(
    "clip", _build_clip, weight=lambda s: 1.0, enabled=lambda s: s.loss in ("clip", "clip+trace"), needs_encoder=True
)
register_term(
    "trace",
    _build_trace,
    weight=lambda s: 1.0 if s.loss == "trace" else float(s.trace_weight),
    enabled=lambda s: s.loss in ("trace", "clip+trace"),
)


def _build_temporal(settings, encoder, target, device, anchor=None, temporal_weight=1.0):
    from .temporal import TemporalTerm

    return TemporalTerm(anchor, float(temporal_weight), canvas=tuple(target.shape[-2:]), device=device)


register_term(
    "temporal", _build_temporal, weight=lambda s: 1.0, enabled=lambda s: True, needs=("anchor",), inputs="points"
)


# --------------------------------------------------------------------------- the objective


def _build_term(
    term: Term, settings, encoder, target: torch.Tensor, device, context: Dict
) -> Tuple[str, float, object]:
    """(name, weight, loss object) of ``term``, built from the context keys it needs and those named after
    it (``temporal_weight`` for the term ``temporal``)."""
    extra = {k: context[k] for k in term.needs}
    extra.update({k: v for k, v in context.items() if k.startswith(term.name + "_")})
    return term.name, float(term.weight(settings)), term.build(settings, encoder, target, device, **extra)


def prepare_target(target, canvas=None) -> torch.Tensor:
    """A target picture as the objective takes it: ``[3,H,W]`` RGB 0..1, finite, at the canvas size
    (H, W) when given."""
    from ..prepare.images import as_rgb

    t = (
        as_rgb(target)
        if not (isinstance(target, torch.Tensor) and target.ndim == 3 and target.shape[0] == 3)
        else target.detach().float()
    )
    if not bool(torch.isfinite(t).all()):
        raise OptimizeError("the target image contains NaN or infinite values; check the node or file that made it")
    if float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3:
        raise OptimizeError(
            f"the target image must be RGB in 0..1; got values {float(t.min()):.3g}..{float(t.max()):.3g}"
        )
    if canvas is not None and tuple(t.shape[-2:]) != tuple(canvas):
        t = F.interpolate(t.unsqueeze(0), size=tuple(canvas), mode="bilinear", align_corners=False, antialias=True)[
            0
        ].clamp(0, 1)
    return t


class Objective:
    """The loss of sketches against one target (see the module docstring).

    ``train_loss(images, generators)`` / ``eval_loss(images)``: dicts of ``[B]`` tensors (each term's
    total under its name, the terms' own parts, and ``total``) for renders ``[B,3,H,W]``.
    ``evaluate(strokes)``: the eval loss ``[B]`` (CPU) of strokes as the optimiser draws them.
    """

    def __init__(
        self,
        terms: Sequence[Tuple[str, float, object]],
        target: torch.Tensor,
        device,
        settings,
        encoder=None,
        point_terms: Sequence[str] = (),
    ):
        if not terms:
            raise OptimizeError("the objective has no loss term; use loss 'clip', 'trace' or 'clip+trace'")
        self.terms = list(terms)
        self.point_terms = frozenset(point_terms)  # names of the terms that measure control points, not renders
        self.target = target
        self.device = device
        self.settings = settings
        self.encoder = encoder
        self.amp_dtype = getattr(self.terms[0][2], "amp_dtype", None)

    @classmethod
    def build(cls, settings, encoder, target, device=None, canvas=None, context=None) -> "Objective":
        """The objective of ``settings`` (an `OptimizeConfig`, or anything with the objective's fields and
        the optimiser's ``background`` / ``pen_width``) for ``target`` on ``device`` (default: the
        encoder's, else the CPU). ``canvas`` (H, W): the size the target is brought to (default its own).
        ``context``: data the terms that need it are built from (a video frame's ``anchor`` points)."""
        context = dict(context or {})
        wanted = [t for t in TERMS.values() if t.enabled(settings) and all(k in context for k in t.needs)]
        if wanted and all(t.inputs == "points" for t in wanted):
            raise OptimizeError(
                f"the objective has only terms on the stroke geometry ({', '.join(t.name for t in wanted)}); "
                "it needs a picture term too: use loss 'clip', 'trace' or 'clip+trace'"
            )
        if any(t.needs_encoder for t in wanted) and encoder is None:
            raise OptimizeError(
                f"loss {settings.loss!r} needs a CLIP encoder; pass one (clipasso.models.load_clip) "
                "or use loss='trace', which needs no weights"
            )
        if device is None:
            device = encoder.device if encoder is not None else torch.device("cpu")
        device = torch.device(device)
        if encoder is not None and any(t.needs_encoder for t in wanted) and device != encoder.device:
            raise OptimizeError(
                f"the encoder is on {encoder.device} but optimisation was asked on {device}; "
                "load the encoder on the same device"
            )
        t = prepare_target(target, canvas)
        t = t.to(device)
        terms = [_build_term(term, settings, encoder, t, device, context) for term in wanted]
        return cls(
            terms,
            t,
            device,
            settings,
            encoder=encoder if any(x.needs_encoder for x in wanted) else None,
            point_terms=[x.name for x in wanted if x.inputs == "points"],
        )

    def with_context(self, **context) -> "Objective":
        """This objective plus the terms built from ``context`` (those whose ``needs`` it holds and which
        this one lacks); the terms already built are shared, not built again (a CLIP term's target
        features cost forward passes). ``Objective.build(..., context=c)`` gives the same objective."""
        have = {name for name, _, _ in self.terms}
        extra = [
            t
            for t in TERMS.values()
            if t.needs and t.name not in have and t.enabled(self.settings) and all(k in context for k in t.needs)
        ]
        if not extra:
            return self
        terms = list(self.terms)
        terms += [_build_term(term, self.settings, self.encoder, self.target, self.device, context) for term in extra]
        order = {name: i for i, name in enumerate(TERMS)}
        terms.sort(key=lambda t: order.get(t[0], len(order)))
        points = set(self.point_terms) | {t.name for t in extra if t.inputs == "points"}
        return Objective(terms, self.target, self.device, self.settings, encoder=self.encoder, point_terms=points)

    @property
    def canvas(self) -> Tuple[int, int]:
        return tuple(self.target.shape[-2:])

    def term(self, name: str):
        for n, _, loss in self.terms:
            if n == name:
                return loss
        return None

    def _join(self, parts: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        if len(parts) == 1 and self.terms[0][1] == 1.0:
            out = dict(parts[0])
            out[self.terms[0][0]] = parts[0]["total"]
            return out
        out, total = {}, None
        for (name, weight, _), part in zip(self.terms, parts):
            out.update({k: v for k, v in part.items() if k != "total"})
            value = part["total"].to(self.device)
            out[name] = value
            total = value * weight if total is None else total + weight * value
        out["total"] = total
        return out

    @property
    def needs_points(self) -> bool:
        """Whether a term measures the control points (then the losses need ``points`` besides the renders)."""
        return bool(self.point_terms)

    def _input(self, name: str, images, points):
        if name not in self.point_terms:
            return images
        if points is None:
            raise OptimizeError(
                f"the objective's {name!r} term measures the control points; pass points=[B,S,P,2] with the renders"
            )
        return points

    def eval_loss(self, images: torch.Tensor, points: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Clean-view loss per candidate (what best-of-N compares). Call under no_grad. ``points``: the
        control points drawn in ``images``, for the terms on the geometry (`needs_points`)."""
        return self._join([loss.eval_loss(self._input(n, images, points)) for n, _, loss in self.terms])

    def train_loss(
        self, images: torch.Tensor, generators: Sequence[torch.Generator], points: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        return self._join([loss.train_loss(self._input(n, images, points), generators) for n, _, loss in self.terms])

    __call__ = train_loss

    def reference_ink(self) -> torch.Tensor:
        """[H,W] where the sketch should have ink: the trace term's reference, else the target's lines."""
        trace = self.term("trace")
        if trace is not None:
            return trace.reference_ink[0, 0].float()
        from .losses import line_map

        return line_map(self.target).to(self.target.device)

    # .................................................................. measuring strokes

    def draw(self, strokes: Strokes) -> torch.Tensor:
        """``[B,3,H,W]`` the strokes as the optimiser draws them (the pen, if set, overrides the widths)."""
        from ..render.raster import rasterize

        h, w = strokes.canvas
        widths = strokes.widths.detach().to(self.device, torch.float32)
        pen = getattr(self.settings, "pen_width", None)
        if pen is not None:
            widths = torch.full_like(widths, pen_half_width(pen))
        return rasterize(
            strokes.points.detach().to(self.device, torch.float32),
            widths,
            strokes.colors.detach().to(self.device, torch.float32),
            h,
            w,
            getattr(self.settings, "background", (1.0, 1.0, 1.0)),
            getattr(self.settings, "renderer", "auto"),
        )[0]

    def evaluate(self, strokes: Strokes) -> torch.Tensor:
        """Eval loss ``[B]`` (float, CPU) of every candidate of ``strokes``; non-finite losses are inf."""
        if tuple(strokes.canvas) != self.canvas:
            raise OptimizeError(f"the strokes' canvas {strokes.canvas} differs from the objective's {self.canvas}")
        with torch.no_grad():
            pts = strokes.points.detach().to(self.device, torch.float32) if self.needs_points else None
            ev = self.eval_loss(self.draw(strokes), pts)["total"].detach()
        ev = torch.where(torch.isfinite(ev), ev, torch.full_like(ev, float("inf")))
        return ev.float().cpu()

    def masked(self, sketch: Strokes, visible: torch.Tensor, chunk: int = EVAL_CHUNK) -> torch.Tensor:
        """Eval loss ``[N]`` of one sketch with only some strokes visible: ``visible`` ``[N, S]`` bool, one row
        per subset (False = the stroke is made fully transparent; an all-False row is the empty canvas)."""
        visible = torch.as_tensor(visible, dtype=torch.bool).cpu()
        if visible.ndim != 2 or visible.shape[1] != sketch.num_strokes:
            raise OptimizeError(f"visible must be [N, {sketch.num_strokes}]; got {tuple(visible.shape)}")
        out = []
        for start in range(0, visible.shape[0], max(1, int(chunk))):
            rows = visible[start : start + chunk]
            n = rows.shape[0]
            colors = sketch.colors[0].expand(n, -1, -1).clone()
            colors[..., 3] = colors[..., 3] * rows.float()
            batch = Strokes(
                sketch.points[0].expand(n, -1, -1, -1).clone(),
                sketch.widths[0].expand(n, -1).clone(),
                colors,
                sketch.canvas,
            )
            out.append(self.evaluate(batch))
        return torch.cat(out)


def objective_for(target, encoder, config=None, device=None, canvas=None) -> Objective:
    """The objective to measure with: ``encoder`` itself when it is an `Objective` (built once by the
    caller), else one built from ``config`` (an `OptimizeConfig`; default its defaults) for ``target``."""
    from ..settings import OptimizeConfig

    if isinstance(encoder, Objective):
        return encoder
    cfg = config or OptimizeConfig()
    if not isinstance(cfg, OptimizeConfig):
        raise OptimizeError(f"config must be an OptimizeConfig; got {type(cfg).__name__}")
    return Objective.build(cfg.validate(), encoder, target, device, canvas=canvas)


__all__ = ["Objective", "objective_for", "TERMS", "register_term", "prepare_target", "EVAL_CHUNK"]
