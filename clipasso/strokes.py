"""The stroke type: a batch of candidate sketches made of open cubic Bezier strokes.

`Strokes` is the one value that travels between pipeline stages and ComfyUI nodes
(custom type ``SKETCH_STROKES``). It is a frozen dataclass: a stage that changes
anything returns a new value through `replace`, so an object cached by ComfyUI
and handed to several nodes is never altered behind their back.

Conventions (same as diffvg as CLIPasso used it):
- ``points`` ``[B, S, P, 2]`` float32 in canvas pixels, x = column, y = row, origin at
  the top-left corner of the canvas; P = 1 + 3k for k cubic segments per stroke.
- ``widths`` ``[B, S]`` are HALF-widths: 1.5 draws a 3 px line.
- ``colors`` ``[B, S, 4]`` straight (not premultiplied) RGBA in 0..1; alpha is opacity.
- ``canvas`` ``(H, W)`` is the coordinate frame of ``points``.
- ``losses``/``iterations`` ``[B]`` and ``seeds`` (tuple of B ints) are optional bookkeeping
  of the optimiser and best-of-N selection; ``pictures`` (tuple of B ints) says which picture of a
  batch each candidate sketches (Initialize Strokes sets it; None: they all sketch one picture).
- ``layers`` (tuple of S names, optional) says which layer each stroke belongs to in a scene sketch
  (``"background"``, ``"foreground"``; `clipasso.scene`): the SVG writes one group per layer. None for
  a plain sketch, which then behaves exactly as before layers existed.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

from .errors import ClipassoError
from .settings import PlaceSettings

DEFAULT_HALF_WIDTH = PlaceSettings().width  # diffvg half-width CLIPasso used: a 3 px line


def pen_half_width(pen_width: float) -> float:
    """The stroke half-width (what the rasterizer draws with) of a pen's full line width in canvas pixels."""
    return pen_width / 2.0


class StrokeError(ClipassoError, ValueError):
    """Raised for a malformed stroke set; the message says what is wrong and how to fix it."""


LAYER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")  # a layer name is also its SVG group's id


def _as_float_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise StrokeError(f"{name} must be a tensor or nested list of numbers ({exc})") from exc
    if not value.is_floating_point():
        value = value.float()
    return value


@dataclass(frozen=True, eq=False, repr=False)
class Strokes:
    points: torch.Tensor
    widths: torch.Tensor
    colors: torch.Tensor
    canvas: Tuple[int, int]
    losses: Optional[torch.Tensor] = None
    seeds: Optional[Tuple[int, ...]] = None
    iterations: Optional[torch.Tensor] = None
    pictures: Optional[Tuple[int, ...]] = None
    layers: Optional[Tuple[str, ...]] = None

    # ------------------------------------------------------------------ building
    def __post_init__(self):
        pts = _as_float_tensor("points", self.points)
        if pts.ndim == 3:  # a single candidate [S, P, 2]
            pts = pts.unsqueeze(0)
        if pts.ndim != 4 or pts.shape[-1] != 2:
            raise StrokeError(
                f"points must have shape [B, S, P, 2] (candidates, strokes, control points, xy); got {tuple(pts.shape)}"
            )
        b, s, p, _ = pts.shape
        if b < 1:
            raise StrokeError("a stroke set needs at least one candidate (B >= 1); got B = 0")
        if s < 1:
            raise StrokeError("a sketch needs at least one stroke; got 0 strokes. Ask for 1 or more strokes.")
        if p < 4 or (p - 1) % 3 != 0:
            raise StrokeError(
                f"each stroke needs 1 + 3k control points for k cubic segments (4, 7, 10, ...); got P = {p}"
            )
        canvas = self.canvas
        try:
            canvas = (int(canvas[0]), int(canvas[1]))
        except Exception as exc:  # noqa: BLE001
            raise StrokeError(f"canvas must be (height, width); got {self.canvas!r}") from exc
        if canvas[0] <= 0 or canvas[1] <= 0:
            raise StrokeError(f"canvas size must be positive (height, width); got {canvas}")

        widths = _as_float_tensor("widths", self.widths).to(pts.device)
        if widths.ndim == 0:
            widths = widths.expand(b, s)
        elif widths.ndim == 1 and widths.shape[0] == s:
            widths = widths.unsqueeze(0).expand(b, s)
        if tuple(widths.shape) != (b, s):
            raise StrokeError(
                f"widths must have shape [B, S] = [{b}, {s}] (half-widths in pixels); got {tuple(widths.shape)}"
            )
        colors = _as_float_tensor("colors", self.colors).to(pts.device)
        if colors.ndim == 1:
            colors = colors.expand(b, s, colors.shape[0])
        elif colors.ndim == 2 and colors.shape[0] == s:
            colors = colors.unsqueeze(0).expand(b, s, colors.shape[1])
        if colors.ndim == 3 and colors.shape[-1] == 3:  # RGB -> opaque RGBA
            colors = torch.cat([colors, colors.new_ones(*colors.shape[:-1], 1)], -1)
        if tuple(colors.shape) != (b, s, 4):
            raise StrokeError(f"colors must have shape [B, S, 4] (straight RGBA in 0..1); got {tuple(colors.shape)}")

        for name, t in (("points", pts), ("widths", widths), ("colors", colors)):
            if not bool(torch.isfinite(t.detach()).all()):
                raise StrokeError(
                    f"{name} contain NaN or infinity; the sketch is broken "
                    "(an optimiser diverged or an input was corrupt). Re-initialise the strokes."
                )
        if bool((widths.detach() <= 0).any()):
            raise StrokeError("stroke widths must be positive half-widths in pixels (1.5 draws a 3 px line)")
        if bool(((colors.detach() < 0) | (colors.detach() > 1)).any()):
            raise StrokeError("stroke colours must be RGBA values in 0..1")

        losses = self.losses
        if losses is not None:
            losses = _as_float_tensor("losses", losses).reshape(-1).to(pts.device)
            if losses.numel() != b:
                raise StrokeError(f"losses must hold one value per candidate ({b}); got {losses.numel()}")
        iterations = self.iterations
        if iterations is not None:
            iterations = torch.as_tensor(iterations).reshape(-1).long().to(pts.device)
            if iterations.numel() != b:
                raise StrokeError(f"iterations must hold one value per candidate ({b}); got {iterations.numel()}")
        seeds = self.seeds
        if seeds is not None:
            seeds = tuple(int(x) for x in seeds)
            if len(seeds) != b:
                raise StrokeError(f"seeds must hold one value per candidate ({b}); got {len(seeds)}")
        pictures = self.pictures
        if pictures is not None:
            pictures = tuple(int(x) for x in pictures)
            if len(pictures) != b or any(p < 0 for p in pictures):
                raise StrokeError(f"pictures must hold one picture index >= 0 per candidate ({b}); got {pictures}")

        layers = self.layers
        if layers is not None:
            if isinstance(layers, str):
                layers = (layers,) * s
            layers = tuple(layers)
            if len(layers) != s:
                raise StrokeError(f"layers must name one layer per stroke ({s}); got {len(layers)} name(s)")
            bad = sorted({repr(n) for n in layers if not (isinstance(n, str) and LAYER_NAME.match(n))})
            if bad:
                raise StrokeError(
                    f"layer names must start with a letter and hold only letters, digits, '-' and '_' (at most "
                    f"64 characters; they become SVG group ids); got {', '.join(bad[:4])}"
                )
        set_ = object.__setattr__
        set_(self, "points", pts)
        set_(self, "widths", widths.contiguous())
        set_(self, "colors", colors.contiguous())
        set_(self, "canvas", canvas)
        set_(self, "losses", losses)
        set_(self, "iterations", iterations)
        set_(self, "seeds", seeds)
        set_(self, "pictures", pictures)
        set_(self, "layers", layers)

    @classmethod
    def from_points(
        cls, points, canvas, width: float = DEFAULT_HALF_WIDTH, color: Sequence[float] = (0.0, 0.0, 0.0, 1.0), **extra
    ) -> "Strokes":
        """Strokes of one width and colour (CLIPasso's black 3 px pen by default)."""
        pts = _as_float_tensor("points", points)
        if pts.ndim == 3:
            pts = pts.unsqueeze(0)
        if pts.ndim != 4:
            raise StrokeError(f"points must have shape [B, S, P, 2]; got {tuple(pts.shape)}")
        b, s = pts.shape[:2]
        widths = torch.full((b, s), float(width), dtype=pts.dtype, device=pts.device)
        rgba = torch.as_tensor(list(color), dtype=pts.dtype, device=pts.device)
        if rgba.numel() == 3:
            rgba = torch.cat([rgba, rgba.new_ones(1)])
        return cls(pts, widths, rgba.expand(b, s, 4).clone(), canvas, **extra)

    # ------------------------------------------------------------------ shape
    @property
    def num_candidates(self) -> int:
        return self.points.shape[0]

    @property
    def num_strokes(self) -> int:
        return self.points.shape[1]

    @property
    def num_segments(self) -> int:
        return (self.points.shape[2] - 1) // 3

    @property
    def height(self) -> int:
        return self.canvas[0]

    @property
    def width(self) -> int:
        return self.canvas[1]

    @property
    def device(self) -> torch.device:
        return self.points.device

    def __len__(self) -> int:
        return self.num_candidates

    # ------------------------------------------------------------------ new values
    def replace(self, **changes) -> "Strokes":
        """A new stroke set with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to(self, device) -> "Strokes":
        def mv(t):
            return None if t is None else t.to(device)

        return Strokes(
            mv(self.points),
            mv(self.widths),
            mv(self.colors),
            self.canvas,
            mv(self.losses),
            self.seeds,
            mv(self.iterations),
            self.pictures,
            self.layers,
        )

    def cpu(self) -> "Strokes":
        return self.detach().to("cpu")

    def detach(self) -> "Strokes":
        def dt(t):
            return None if t is None else t.detach().clone()

        return Strokes(
            dt(self.points),
            dt(self.widths),
            dt(self.colors),
            self.canvas,
            dt(self.losses),
            self.seeds,
            dt(self.iterations),
            self.pictures,
            self.layers,
        )

    def select(self, index) -> "Strokes":
        """Candidates picked by an int, a list of ints or a slice, as a new stroke set."""
        if isinstance(index, int):
            if not -self.num_candidates <= index < self.num_candidates:
                raise StrokeError(
                    f"candidate {index} does not exist; this stroke set has {self.num_candidates} candidate(s)"
                )
            index = [index % self.num_candidates]
        idx = torch.arange(self.num_candidates)[index].reshape(-1)
        if idx.numel() == 0:
            raise StrokeError("selection is empty: pick at least one candidate")
        dev_idx = idx.to(self.device)

        def pick(t):
            return None if t is None else t[dev_idx]

        seeds = None if self.seeds is None else tuple(self.seeds[i] for i in idx.tolist())
        pictures = None if self.pictures is None else tuple(self.pictures[i] for i in idx.tolist())
        return Strokes(
            pick(self.points),
            pick(self.widths),
            pick(self.colors),
            self.canvas,
            pick(self.losses),
            seeds,
            pick(self.iterations),
            pictures,
            self.layers,
        )

    def scaled(self, height: int, width: int) -> "Strokes":
        """The same drawing on a canvas of another size (points and widths scaled)."""
        sy, sx = height / self.height, width / self.width
        pts = self.points * self.points.new_tensor([sx, sy])
        return self.replace(points=pts, widths=self.widths * (sx * sy) ** 0.5, canvas=(int(height), int(width)))

    @staticmethod
    def concat(items: Sequence["Strokes"]) -> "Strokes":
        """Candidates of several stroke sets (same canvas and shape) as one batch."""
        items = list(items)
        if not items:
            raise StrokeError("nothing to concatenate")
        first = items[0]
        for it in items[1:]:
            if it.canvas != first.canvas or it.points.shape[1:] != first.points.shape[1:]:
                raise StrokeError(
                    "stroke sets to join must share canvas size, stroke count and segment count; "
                    f"got {first.canvas}/{tuple(first.points.shape[1:])} and "
                    f"{it.canvas}/{tuple(it.points.shape[1:])}"
                )
            if it.layers != first.layers:
                raise StrokeError(
                    "stroke sets to join as candidates must put their strokes in the same layers; "
                    f"got {_layer_text(first.layers)} and {_layer_text(it.layers)}"
                )

        def cat(name):
            vals = [getattr(it, name) for it in items]
            return None if any(v is None for v in vals) else torch.cat(vals)

        seeds = None if any(it.seeds is None for it in items) else sum((it.seeds for it in items), ())
        pictures = None if any(it.pictures is None for it in items) else sum((it.pictures for it in items), ())
        return Strokes(
            cat("points"),
            cat("widths"),
            cat("colors"),
            first.canvas,
            cat("losses"),
            seeds,
            cat("iterations"),
            pictures,
            first.layers,
        )

    # ------------------------------------------------------------------ layers
    @property
    def layer_names(self) -> Tuple[str, ...]:
        """The layers of the strokes in drawing order (their first stroke's); () for a plain sketch."""
        return tuple(dict.fromkeys(self.layers)) if self.layers is not None else ()

    def layer(self, name: str) -> "Strokes":
        """The strokes of one layer, every candidate (losses, seeds and iterations kept)."""
        if name not in self.layer_names:
            have = ", ".join(self.layer_names) if self.layers is not None else "none (a plain sketch)"
            raise StrokeError(f"these strokes have no layer {name!r}; their layers: {have}")
        keep = [i for i, n in enumerate(self.layers) if n == name]
        idx = torch.tensor(keep, device=self.device)
        return self.replace(
            points=self.points[:, idx],
            widths=self.widths[:, idx],
            colors=self.colors[:, idx],
            layers=(name,) * len(keep),
        )

    @staticmethod
    def join_layers(parts) -> "Strokes":
        """One stroke set from layers drawn one after the other: ``parts`` is a dict (or a sequence of pairs)
        of layer name -> `Strokes` with the same canvas, candidate count and segment count; each stroke is
        labelled with its layer. A part that already carries layers keeps them (so a layered set can be
        joined again). Losses and iterations are dropped (no loss measured the joined set); seeds and
        pictures are kept when every part has the same."""
        pairs = list(parts.items()) if isinstance(parts, dict) else [tuple(p) for p in parts]
        if not pairs:
            raise StrokeError("join_layers needs at least one (layer name, strokes) pair")
        first = pairs[0][1]
        names = []
        for name, it in pairs:
            if not isinstance(it, Strokes):
                raise StrokeError(f"layer {name!r} must be a Strokes value; got {type(it).__name__}")
            if (
                it.canvas != first.canvas
                or it.num_candidates != first.num_candidates
                or it.points.shape[2:] != first.points.shape[2:]
            ):
                raise StrokeError(
                    "layers to join must share canvas size, candidate count and segment count; got "
                    f"{first.canvas}/{first.num_candidates}/{first.num_segments} and "
                    f"{it.canvas}/{it.num_candidates}/{it.num_segments} for layer {name!r}"
                )
            names.extend(it.layers if it.layers is not None else (name,) * it.num_strokes)
        items = [it.to(first.device) for _, it in pairs]
        same = all(it.seeds == first.seeds for it in items)
        same_pictures = all(it.pictures == first.pictures for it in items)
        return Strokes(
            torch.cat([it.points for it in items], 1),
            torch.cat([it.widths for it in items], 1),
            torch.cat([it.colors for it in items], 1),
            first.canvas,
            seeds=first.seeds if same else None,
            pictures=first.pictures if same_pictures else None,
            layers=tuple(names),
        )

    def picture_groups(self):
        """Candidate indices per picture, in picture order (one group when ``pictures`` is None)."""
        if self.pictures is None:
            return [list(range(self.num_candidates))]
        groups = {}
        for i, p in enumerate(self.pictures):
            groups.setdefault(p, []).append(i)
        return [groups[p] for p in sorted(groups)]

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        extra = ""
        if self.losses is not None:
            extra = ", losses=[" + ", ".join(f"{v:.4g}" for v in self.losses.detach().cpu().tolist()[:8])
            extra += ", ...]" if self.num_candidates > 8 else "]"
        if self.seeds is not None:
            extra += f", seeds={list(self.seeds[:8])}"
        if self.layers is not None:
            extra += ", layers={" + ", ".join(f"{n}: {self.layers.count(n)}" for n in self.layer_names) + "}"
        return (
            f"Strokes(candidates={self.num_candidates}, strokes={self.num_strokes}, "
            f"segments={self.num_segments}, canvas={self.canvas[0]}x{self.canvas[1]}, "
            f"device={self.device.type}{extra})"
        )

    __str__ = __repr__


def _layer_text(layers) -> str:
    if layers is None:
        return "no layers"
    return "layers " + ", ".join(f"{n} x{layers.count(n)}" for n in dict.fromkeys(layers))
