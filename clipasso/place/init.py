"""Where the strokes start: saliency-guided stroke initialization.

CLIPasso places every stroke as a tiny random squiggle at a pixel drawn from a probability
map built from the ViT saliency map, optionally intersected with an XDoG ink map:

1. ``M = saliency * edges`` (only ink pixels keep their saliency; switch off with
   ``use_edges=False``), optionally ``* mask`` (restrict to the matted object), then ``M / max(M)``.
2. ``P = softmax(M / temperature)`` over the pixels where ``M > 0``; every other pixel has P = 0.
3. ``S`` start pixels per candidate are drawn from P without replacement, with one random
   generator per seed, so a candidate's strokes depend only on its own seed.
4. Each stroke continues from its start with a chained random walk: every further control point
   is the previous one plus ``radius * (u - 0.5)`` of the canvas size per axis, u ~ U[0, 1).

Points are in canvas pixels, x = column, y = row, at pixel centres (column + 0.5), and are kept
inside the canvas. Without a saliency map the start points are uniform over the canvas (or the mask).

When the map has fewer usable pixels than strokes (an all-white image has no ink, a tiny mask,
a tiny canvas) the sampler widens step by step - saliency without the ink rule, then the mask,
then the whole canvas, and finally repeats pixels - and says so with an `InitFallbackWarning`.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import ClipassoError
from ..settings import Option, PlaceSettings, SettingsError, SketchSettings
from ..strokes import Strokes

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = PlaceSettings.temperature  # CLIPasso's softmax_temp
DEFAULT_RADIUS = 0.05  # CLIPasso's hard-coded random-walk radius, as a fraction of the canvas
MULTINOMIAL_LIMIT = 2**24  # torch.multinomial's limit on categories; larger maps use Gumbel top-k


class InitError(ClipassoError, ValueError):
    """Bad arguments for stroke initialization; the message says what to change."""


class InitFallbackWarning(UserWarning):
    """The sampling map had too few usable pixels, so start points came from a wider map."""


# ---------------------------------------------------------------------------- argument checks
def _canvas(canvas) -> Tuple[int, int]:
    try:
        h, w = (int(canvas[0]), int(canvas[1]))
        if (h, w) != (canvas[0], canvas[1]):
            raise ValueError
    except Exception:  # noqa: BLE001 - re-raised with a clear message
        raise InitError(f"canvas must be (height, width) in whole pixels; got {canvas!r}") from None
    if h <= 0 or w <= 0:
        raise InitError(f"canvas size must be positive (height, width); got {(h, w)}")
    return h, w


def _seeds(seeds) -> Tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return (int(seeds),)
    try:
        out = tuple(int(s) for s in seeds)
        if any(isinstance(s, bool) or float(s) != int(s) for s in seeds):
            raise ValueError
    except Exception:  # noqa: BLE001
        raise InitError(f"seeds must be an int or a sequence of ints (one per candidate); got {seeds!r}") from None
    if not out:
        raise InitError("seeds is empty: give at least one seed (one candidate sketch per seed)")
    return out


def _map(name: str, value, canvas: Tuple[int, int]) -> Optional[torch.Tensor]:
    """A [H, W] float map on the CPU, checked against the canvas size."""
    if value is None:
        return None
    t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    t = t.float().cpu()
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise InitError(f"{name} must be a 2-D map [H, W]; got shape {tuple(t.shape)}")
    if tuple(t.shape) != canvas:
        raise InitError(
            f"{name} is {t.shape[0]}x{t.shape[1]} but the canvas is {canvas[0]}x{canvas[1]}; "
            f"compute the {name} at the canvas size (or resize it) first"
        )
    if not bool(torch.isfinite(t).all()):
        raise InitError(f"{name} contains NaN or infinite values; recompute it")
    if bool((t < 0).any()):
        raise InitError(
            f"{name} must be non-negative (0 = never start a stroke here); its minimum is {float(t.min()):.3g}"
        )
    return t


# ---------------------------------------------------------------------------- the map
def sampling_map(
    saliency=None, edges=None, mask=None, use_edges: bool = True, canvas: Optional[Tuple[int, int]] = None
) -> torch.Tensor:
    """The map M in 0..1 whose non-zero pixels are start candidates (before the softmax).

    As the original's ``set_inds_clip``: the saliency A is min-max normalised to 0..1, then
    multiplied by the ink map (and our object mask); M is *not* normalised again, so when the most
    salient pixel is not ink the softmax over M is flatter than over A. ``saliency`` [H,W] >= 0
    (uniform when None), ``edges`` [H,W] with 1 = ink (used when ``use_edges``), ``mask`` [H,W] with
    1 = object.
    """
    ref = next((m for m in (saliency, edges, mask) if m is not None), None)
    if canvas is None:
        if ref is None:
            raise InitError("sampling_map needs a canvas size or at least one map")
        canvas = tuple(np.shape(ref)[-2:])
    canvas = _canvas(canvas)
    sal = _map("saliency", saliency, canvas)
    if sal is None:
        m = torch.ones(canvas)
    else:
        lo, hi = float(sal.min()), float(sal.max())
        # a constant map says nothing about where: every pixel it allows is as good as any other
        m = (sal - lo) / (hi - lo) if hi > lo else (sal > 0).float()
    if use_edges and edges is not None:
        m = m * _map("edges", edges, canvas)
    if mask is not None:
        m = m * _map("mask", mask, canvas)
    return m


def start_probabilities(map_: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """softmax(map / temperature) over the pixels where map > 0; 0 elsewhere. Sums to 1 (or is all 0)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InitError(
            f"temperature must be a positive number (CLIPasso uses 0.3; lower = greedier); got {temperature!r}"
        )
    m = map_.float()
    keep = m > 0
    p = torch.zeros_like(m)
    if bool(keep.any()):
        logits = m[keep] / float(temperature)
        p[keep] = torch.softmax(logits - logits.max(), dim=0)
    return p


# ---------------------------------------------------------------------------- sampling
def _draw(weights: torch.Tensor, count: int, taken: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Up to ``count`` flat indices drawn without replacement from ``weights`` (not yet taken)."""
    w = weights.reshape(-1).double().clone()
    w[taken] = 0
    avail = int((w > 0).sum())
    n = min(count, avail)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    if w.numel() <= MULTINOMIAL_LIMIT:
        return torch.multinomial(w, n, replacement=False, generator=gen)
    # huge canvases: Gumbel top-k draws the same distribution without replacement
    u = torch.rand(w.shape, generator=gen, dtype=torch.float64).clamp_(1e-300, 1.0)
    keys = torch.where(w > 0, w.log() - (-u.log()).log(), torch.full_like(w, -math.inf))
    return torch.topk(keys, n).indices


def sample_start_pixels(
    levels: Sequence[Tuple[str, torch.Tensor]], count: int, gen: torch.Generator
) -> Tuple[torch.Tensor, List[str]]:
    """``count`` flat pixel indices; fills from each level in turn when the previous one runs out.

    ``levels`` is a list of (description, weights) from the intended map to the widest one.
    Returns the indices and notes on each widening step that was needed.
    """
    numel = levels[0][1].numel()
    taken = torch.zeros(numel, dtype=torch.bool)
    picked: List[torch.Tensor] = []
    notes: List[str] = []
    need = count
    for i, (what, weights) in enumerate(levels):
        idx = _draw(weights, need, taken, gen)
        if i > 0 and idx.numel():
            notes.append(f"{idx.numel()} start point(s) from {what}")
        picked.append(idx)
        taken[idx] = True
        need -= idx.numel()
        if need == 0:
            break
    if need > 0:  # fewer pixels on the whole canvas than strokes: reuse pixels
        idx = torch.randint(0, numel, (need,), generator=gen)
        notes.append(f"{need} start point(s) reuse pixels (the canvas has only {numel} pixels)")
        picked.append(idx)
    return torch.cat(picked), notes


def random_walk(
    starts: torch.Tensor, num_segments: int, radius: float, canvas: Tuple[int, int], gen: torch.Generator
) -> torch.Tensor:
    """Strokes [S, 1+3k, 2] grown from ``starts`` [S, 2] (pixels) by CLIPasso's chained random walk."""
    h, w = canvas
    scale = torch.tensor([w, h], dtype=torch.float32)
    steps = (torch.rand(starts.shape[0], 3 * num_segments, 2, generator=gen) - 0.5) * radius * scale
    pts = torch.cat([starts.unsqueeze(1), starts.unsqueeze(1) + steps.cumsum(1)], dim=1)
    # keep the initial squiggles on the canvas (the optimiser may move them off later)
    pts[..., 0] = pts[..., 0].clamp(0, w)
    pts[..., 1] = pts[..., 1].clamp(0, h)
    return pts


COUNT = Option(help="strokes to place", kind="int", low=1)  # like `PlaceSettings.strokes`, without its cap: the
# pipeline places the abstraction budget, up to twice the stroke count


def initialize_strokes(
    canvas: Tuple[int, int],
    num_strokes: Optional[int] = None,
    seeds: Union[int, Sequence[int], None] = None,
    saliency=None,
    edges=None,
    mask=None,
    *,
    radius: float = DEFAULT_RADIUS,
    settings=None,
    **overrides,
) -> Strokes:
    """Initial strokes for every seed: ``Strokes`` with points ``[len(seeds), num_strokes, 1+3k, 2]``.

    canvas: (H, W) in pixels. saliency/edges/mask: optional [H, W] maps (see `sampling_map`).
    settings: a `PlaceSettings` or a whole `SketchSettings` (None: the defaults), with ``overrides`` of
    its fields on top (temperature, num_segments, width, use_edges; validated by the settings).
    num_strokes: how many strokes (default the settings' ``strokes``); seeds: one candidate per seed
    (default a whole `SketchSettings`' ``seed_list()``, else 0, 1000, 2000). radius: random-walk step
    size as a fraction of the canvas (CLIPasso's 0.05).
    """

    def label(name):
        return "num_strokes" if name == "strokes" else name

    st = PlaceSettings.of(settings, label=label, **overrides)
    if seeds is None:
        seeds = (settings if isinstance(settings, SketchSettings) else SketchSettings()).seed_list()
    canvas = _canvas(canvas)
    seeds = _seeds(seeds)
    if num_strokes is None:
        num_strokes = st.strokes
    elif isinstance(num_strokes, np.integer):
        num_strokes = int(num_strokes)
    msg = COUNT.problem("num_strokes", num_strokes)
    if msg:
        raise SettingsError(msg)
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius >= 0):
        raise InitError(f"radius must be a non-negative fraction of the canvas (CLIPasso uses 0.05); got {radius!r}")
    num_strokes, num_segments = int(num_strokes), int(st.num_segments)
    temperature, width, use_edges = float(st.temperature), float(st.width), bool(st.use_edges)

    sal = _map("saliency", saliency, canvas)
    edg = _map("edges", edges, canvas) if use_edges else None
    msk = _map("mask", mask, canvas)

    # From the intended map to the widest one; later levels only fill what earlier ones lack.
    levels: List[Tuple[str, torch.Tensor]] = []
    if sal is not None or edg is not None:
        main = sampling_map(sal, edg, msk, use_edges=True, canvas=canvas)
        what = "the saliency map" if sal is not None else "the ink (XDoG) map"
        levels.append((what, start_probabilities(main, temperature)))
        if sal is not None and edg is not None:
            levels.append(
                (
                    "the saliency map without the ink (XDoG) rule",
                    start_probabilities(sampling_map(sal, None, msk, canvas=canvas), temperature),
                )
            )
    if msk is not None:
        levels.append(("anywhere on the mask (uniform)", (msk > 0).float()))
    levels.append(("anywhere on the canvas (uniform)", torch.ones(canvas)))
    if sal is None and msk is None:
        log.info("no saliency map given: %d start points per candidate are uniform over the canvas", num_strokes)

    first_available = int((levels[0][1] > 0).sum())
    cols = canvas[1]
    all_points = []
    all_notes: List[str] = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        flat, notes = sample_start_pixels(levels, num_strokes, gen)
        starts = torch.stack([(flat % cols).float() + 0.5, (flat // cols).float() + 0.5], dim=-1)
        all_points.append(random_walk(starts, num_segments, float(radius), canvas, gen))
        all_notes.extend(notes)
    if all_notes:
        msg = (
            f"stroke initialization: {levels[0][0]} has only {first_available} usable pixel(s) for "
            f"{num_strokes} strokes, so some start points came from wider maps: " + "; ".join(sorted(set(all_notes)))
        )
        log.warning(msg)
        warnings.warn(msg, InitFallbackWarning, stacklevel=2)
    points = torch.stack(all_points)
    return Strokes.from_points(points, canvas, width=float(width), seeds=seeds)


__all__ = [
    "initialize_strokes",
    "sampling_map",
    "start_probabilities",
    "sample_start_pixels",
    "random_walk",
    "InitError",
    "InitFallbackWarning",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_RADIUS",
]


def place_strokes(pictures, settings, saliency=None, masks=None, framing: str = "pad") -> Strokes:
    """Starting strokes for a batch of pictures: each picture framed on the settings' square canvas
    (`clipasso.prepare.target.prepare_target`, matting off), its XDoG ink map when ``use_edges``, its
    saliency map and object mask (``[H,W]`` per picture, or None) framed the same way; one candidate
    per seed (``settings.seed_list()``), picture after picture, each carrying its picture index.

    pictures: a list of ``[3,H,W]`` images; settings: a `clipasso.settings.SketchSettings` (strokes,
    seeds, seed, temperature, num_segments, width, use_edges, canvas)."""
    from ..prepare.images import frame_square
    from ..prepare.target import prepare_target
    from ..prepare.xdog import xdog_edges

    side = int(settings.canvas)
    seeds = list(settings.seed_list())
    saliency = list(saliency) if saliency is not None else [None] * len(pictures)
    masks = list(masks) if masks is not None else [None] * len(pictures)
    if not (len(pictures) == len(saliency) == len(masks)) or not pictures:
        raise InitError(
            f"need one saliency map and one mask (or None) per picture; got {len(pictures)} "
            f"picture(s), {len(saliency)} map(s), {len(masks)} mask(s)"
        )

    def framed(m):
        return None if m is None else frame_square(m[None].float(), side, framing, fill=0.0, mode="bilinear")[0]

    parts = []
    for index, (picture, sal, mask) in enumerate(zip(pictures, saliency, masks)):
        target = prepare_target(picture, canvas=side, background_removal=False, framing=framing)[0]
        edges = xdog_edges(target) if settings.use_edges else None
        part = initialize_strokes(
            (side, side), seeds=seeds, saliency=framed(sal), edges=edges, mask=framed(mask), settings=settings
        )
        parts.append(part.replace(pictures=(index,) * part.num_candidates))
    return Strokes.concat(parts)
