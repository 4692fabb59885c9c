"""The drawing being made stroke by stroke, in the strokes' own order (a `clipasso.post.order` result's):
image frames (`drawing_frames`), an animated SVG (`animated_svg`: SMIL, each stroke drawn along its path in
turn; viewers without SMIL show the finished drawing) and an animated GIF (`frames_to_gif`)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import AbstractionError
from ..post.select import single_sketch
from ..strokes import Strokes
from .svg import to_svg

FRAME_CHUNK = 16  # frames rendered per batch


def drawing_frames(
    strokes: Strokes, size=None, include_blank: bool = True, background=(1.0, 1.0, 1.0), width_scale: float = 1.0
) -> torch.Tensor:
    """The drawing being made stroke by stroke: ``[N,3,H,W]`` with N = S + 1 (empty canvas first) or S.

    Frame k shows the first k strokes in the strokes' own order. size (H, W) renders at another size
    (vector: exact at any size).
    """
    from ..render.raster import render

    sketch = single_sketch(strokes, "drawing_frames")
    s = sketch.num_strokes
    first = 0 if include_blank else 1
    frames = []
    with torch.no_grad():
        for start in range(first, s + 1, FRAME_CHUNK):
            ks = torch.arange(start, min(s + 1, start + FRAME_CHUNK))
            visible = (torch.arange(s).unsqueeze(0) < ks.unsqueeze(1)).float()
            n = len(ks)
            colors = sketch.colors[0].expand(n, -1, -1).clone()
            colors[..., 3] = colors[..., 3] * visible
            batch = Strokes(
                sketch.points[0].expand(n, -1, -1, -1).clone(),
                sketch.widths[0].expand(n, -1).clone(),
                colors,
                sketch.canvas,
            )
            frames.append(render(batch, size=size, background=background, width_scale=width_scale).image.cpu())
    return torch.cat(frames)


_PATH = re.compile(r"<path\b[^>]*?/>", re.S)


def animated_svg(
    strokes: Strokes, stroke_seconds: float = 0.4, hold_seconds: float = 1.5, loop: bool = True, **svg_options
) -> str:
    """SVG text of one sketch whose strokes are drawn one after another, in their order (SMIL).

    Each stroke is traced along its path in ``stroke_seconds``; the finished drawing stays
    ``hold_seconds`` before the animation starts again (``loop``) or for good. The file is
    `clipasso.output.svg.to_svg`'s (same paths, widths, colours; ``svg_options`` go to it) with an
    ``<animate>`` in every path, so readers that ignore SMIL see the finished drawing.
    """
    if not (stroke_seconds > 0 and hold_seconds >= 0):
        raise AbstractionError(
            f"stroke_seconds must be > 0 and hold_seconds >= 0; got {stroke_seconds}, {hold_seconds}"
        )
    sketch = single_sketch(strokes, "animated_svg")
    s = sketch.num_strokes
    meta = dict(svg_options.pop("metadata", None) or {})
    meta.update({"animation": "drawing order", "stroke_seconds": stroke_seconds, "hold_seconds": hold_seconds})
    text = to_svg(sketch, metadata=meta, **svg_options)
    paths = _PATH.findall(text)
    if len(paths) != s:
        raise AbstractionError(f"expected {s} <path> elements from to_svg, found {len(paths)}")
    total = s * stroke_seconds + hold_seconds
    # pathLength="1" makes the dash pattern a fraction of each path; dashoffset 1 -> 0 traces it.
    out, pos = [], 0
    for i, m in enumerate(_PATH.finditer(text)):
        out.append(text[pos : m.start()])
        start, end = i * stroke_seconds, (i + 1) * stroke_seconds
        if loop:
            a, b = start / total, end / total
            times = f"0;{b:.6g};1" if i == 0 else f"0;{a:.6g};{b:.6g};1"
            offsets = "1;0;0" if i == 0 else "1;1;0;0"
            anim = (
                f'<animate attributeName="stroke-dashoffset" values="{offsets}" keyTimes="{times}" '
                f'dur="{total:.6g}s" repeatCount="indefinite"/>'
            )
            if i > 0:  # hidden until its turn (a zero-length dash could show a round-cap dot)
                anim += (
                    f'<animate attributeName="visibility" values="hidden;visible" keyTimes="0;{a:.6g}" '
                    f'calcMode="discrete" dur="{total:.6g}s" repeatCount="indefinite"/>'
                )
        else:
            anim = (
                f'<animate attributeName="stroke-dashoffset" from="1" to="0" begin="{start:.6g}s" '
                f'dur="{stroke_seconds:.6g}s" fill="freeze"/>'
                f'<set attributeName="visibility" to="hidden" begin="0s" dur="{start:.6g}s"/>'
                if i > 0
                else f'<animate attributeName="stroke-dashoffset" from="1" to="0" begin="0s" '
                f'dur="{stroke_seconds:.6g}s" fill="freeze"/>'
            )
        tag = m.group(0)[:-2].rstrip()
        out.append(f'{tag} pathLength="1" stroke-dasharray="1" data-order="{i}">{anim}</path>')
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def write_animated_svg(strokes: Strokes, path, **options) -> Path:
    path = Path(path)
    from ..atomic import write_text_atomic

    write_text_atomic(path, animated_svg(strokes, **options))
    return path


def frames_to_gif(frames: torch.Tensor, path, frame_ms: int = 150, hold_ms: int = 1500, loop: bool = True) -> Path:
    """Write ``frames`` ``[N,3,H,W]`` (0..1) as an animated GIF; the last frame is held ``hold_ms``."""
    from ..prepare.images import to_pil

    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[1] != 3:
        raise AbstractionError(f"frames must be [N,3,H,W] with N >= 1; got {tuple(frames.shape)}")
    images = [to_pil(f.float().clamp(0, 1)) for f in frames]
    durations = [int(frame_ms)] * (len(images) - 1) + [int(max(frame_ms, hold_ms))]
    path = Path(path)
    extra = {"loop": 0} if loop else {}
    from ..atomic import save_image_atomic

    save_image_atomic(
        images[0],
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=durations,
        disposal=1,
        optimize=False,
        **extra,
    )
    return path


__all__ = ["drawing_frames", "animated_svg", "write_animated_svg", "frames_to_gif", "FRAME_CHUNK"]
