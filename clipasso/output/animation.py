"""The drawing being made stroke by stroke, in the strokes' own order (a `clipasso.post.order` result's):
image frames (`drawing_frames`), an animated SVG (`animated_svg`: SMIL, each stroke drawn along its path in
turn; viewers without SMIL show the finished drawing) and an animated GIF (`frames_to_gif`).

A sketched clip, the same strokes moving from frame to frame: `video_svg` / `write_video_svg` write one
SVG whose paths change their ``d`` (and width or colour, where those change) once per frame (SMIL), and
`read_video_svg` reads such a file back into one `Strokes` per frame."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List

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


# ---------------------------------------------------------------------------------------------- video
def _video_frames(frames, what: str = "video_svg") -> List[Strokes]:
    """The frames of a clip as one-candidate CPU `Strokes`, checked to be the same strokes (count, control
    points, canvas, layers) in every frame."""
    if isinstance(frames, Strokes):
        items = [frames.select(b) for b in range(frames.num_candidates)]
    else:
        try:
            items = list(frames)
        except TypeError:
            raise AbstractionError(
                f"{what} needs a sequence of Strokes, one per frame (or one Strokes whose candidates are the "
                f"frames); got {type(frames).__name__}"
            ) from None
    if not items:
        raise AbstractionError(f"{what} needs at least one frame; got none")
    out: List[Strokes] = []
    for k, item in enumerate(items):
        if not isinstance(item, Strokes):
            raise AbstractionError(f"frame {k} is a {type(item).__name__}, not a clipasso Strokes value")
        if item.num_candidates != 1:
            raise AbstractionError(
                f"frame {k} holds {item.num_candidates} candidate sketches; give one per frame "
                "(Strokes.select, or Select Best)"
            )
        out.append(item.cpu())

    def shape(s: Strokes) -> str:
        h, w = s.canvas
        return f"{s.num_strokes} strokes of {s.points.shape[2]} control points on a {w}x{h} canvas"

    first = out[0]
    for k, item in enumerate(out[1:], 1):
        if (item.num_strokes, item.points.shape[2], tuple(item.canvas)) != (
            first.num_strokes,
            first.points.shape[2],
            tuple(first.canvas),
        ):
            raise AbstractionError(
                f"frame {k} has {shape(item)}, but frame 0 has {shape(first)}; every frame of a clip must "
                "have the same strokes (the same count, control points and canvas)"
            )
        if item.layers != first.layers:
            raise AbstractionError(
                f"frame {k}'s stroke layers differ from frame 0's; every frame of a clip must have the same "
                "strokes in the same layers"
            )
    return out


_ATTRIBUTE = re.compile(r'([A-Za-z_:][-\w:.]*)="([^"]*)"')
_ANIMATED = ("d", "stroke-width", "stroke", "stroke-opacity")


def _path_attributes(sketch: Strokes, pen_width) -> List[Dict[str, str]]:
    """The attributes of each stroke's ``<path>`` as `to_svg` writes them (its own formatting, so an animated
    value equals the static one it stands for)."""
    text = to_svg(sketch.replace(layers=None), pen_width=pen_width)
    return [dict(_ATTRIBUTE.findall(m.group(0))) for m in _PATH.finditer(text)]


def _seconds(value: float) -> str:
    return f"{value:.10g}s"


def video_svg(frames, fps: float, loop: bool = True, interpolate: bool = False, **svg_options) -> str:
    """SVG text of a sketched clip: the same strokes, moving once per frame (SMIL ``<animate>``).

    ``frames``: one-candidate `Strokes`, one per frame (or one `Strokes` whose B candidates are B frames),
    all with the same strokes, control points, canvas and layers (else `AbstractionError` naming the first
    frame that differs). The file is `clipasso.output.svg.to_svg`'s of frame 0 (``svg_options`` go to it;
    its metadata also records ``{"animation": "video", "frames": N, "fps": fps}``), so a reader without
    SMIL shows frame 0. Every ``<path>`` gets ``<animate attributeName="d" values="d0;...;dN-1">`` lasting
    N / fps seconds, each value formatted exactly as to_svg formats that frame (`path_data`, in canvas
    pixels: ``size`` only sets the displayed size, so d0 is the static ``d``), and ``stroke-width``,
    ``stroke`` and ``stroke-opacity`` animations only where those change from frame to frame.

    By default each frame is shown for 1/fps seconds (``calcMode="discrete"``), repeating (``loop``) or
    stopping on the last frame (``fill="freeze"``). ``interpolate`` morphs between frames instead
    (``calcMode="linear"``, frame k still at k/fps): looping, the values end with frame 0's again so the
    last frame morphs back into the first; not looping, the animation lasts (N - 1) / fps and stops on the
    last frame. One frame gives a plain static SVG (no ``<animate>``), which `read_video_svg` still reads.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise AbstractionError(f"fps must be a positive number of frames per second; got {fps!r}")
    items = _video_frames(frames)
    n = len(items)
    meta = dict(svg_options.pop("metadata", None) or {})
    meta.update({"animation": "video", "frames": n, "fps": fps})
    text = to_svg(items[0], metadata=meta, **svg_options)
    if n == 1:
        return text
    found = list(_PATH.finditer(text))
    if len(found) != items[0].num_strokes:
        raise AbstractionError(f"expected {items[0].num_strokes} <path> elements from to_svg, found {len(found)}")
    per_frame = [_path_attributes(f, svg_options.get("pen_width")) for f in items]  # [frame][stroke]
    wrap = interpolate and loop
    dur = (n if (loop or not interpolate) else n - 1) / fps
    timing = f'dur="{_seconds(dur)}" ' + ('repeatCount="indefinite"' if loop else 'fill="freeze"')
    timing += f' calcMode="{"linear" if interpolate else "discrete"}"'
    out, pos = [], 0
    for i, m in enumerate(found):
        out.append(text[pos : m.start()])
        anims = []
        for name in _ANIMATED:
            values = [attrs[i][name] for attrs in per_frame]
            if name == "d" or len(set(values)) > 1:
                values = values + values[:1] if wrap else values
                anims.append(f'<animate attributeName="{name}" values="{";".join(values)}" {timing}/>')
        tag = m.group(0)[:-2].rstrip()
        out.append(f"{tag}>{''.join(anims)}</path>")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def write_video_svg(frames, path, fps: float, **options) -> Path:
    """Write `video_svg` of ``frames`` to ``path`` atomically (``options`` as for `video_svg`); returns the path."""
    path = Path(path)
    from ..atomic import write_text_atomic

    write_text_atomic(path, video_svg(frames, fps, **options))
    return path


def read_video_svg(source) -> List[Strokes]:
    """The frames of a sketched clip written by `video_svg`: one one-candidate `Strokes` per frame.

    ``source``: SVG text, bytes or a file path. Each frame is the file with every path's animated values
    (``d``, ``stroke-width``, ``stroke``, ``stroke-opacity``) set to that frame's, read by
    `clipasso.output.svg.read_svg` (its limits and checks included: a clip over `MAX_SVG_BYTES` is
    refused); a path without an animation keeps its static value in every frame, as in a one-frame file.
    Layer groups come back as ``layers``. The frame count is the metadata's (the closing repeat of frame
    0 in a looping interpolated file is dropped). Raises `clipasso.output.svg.SVGError` for an SVG that is
    not such a clip, or whose animations do not match its frame count.
    """
    import json
    import os
    import xml.etree.ElementTree as ET

    from .svg import SVG_NS, SVGError, read_svg

    read_svg(source)  # every check read_svg makes (size, entities, element count) before ElementTree sees it
    if isinstance(source, (bytes, bytearray)):
        text = bytes(source).decode("utf-8", errors="replace")
    elif isinstance(source, str) and source.lstrip().startswith("<"):
        text = source
    else:
        text = Path(os.fspath(source)).read_bytes().decode("utf-8", errors="replace")
    root = ET.fromstring(text.strip().encode("utf-8"))
    element = root.find(f"{{{SVG_NS}}}metadata")
    try:
        meta = json.loads(element.text or "") if element is not None else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("animation") != "video":
        raise SVGError(
            'this SVG is not a sketched clip (its <metadata> does not say "animation": "video"); read a '
            "single sketch with read_svg, or write clips with write_video_svg"
        )
    n = meta.get("frames")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SVGError(f"the clip's metadata gives {n!r} frames; it needs a whole number of frames, 1 or more")

    animated = []  # (path element, {attribute: values per frame})
    for i, path in enumerate(root.iter(f"{{{SVG_NS}}}path")):
        values = {}
        for anim in list(path):
            if anim.tag != f"{{{SVG_NS}}}animate":
                continue
            path.remove(anim)
            name = anim.get("attributeName")
            if name not in _ANIMATED:
                continue
            vals = [v.strip() for v in (anim.get("values") or "").split(";")]
            if len(vals) < n:
                raise SVGError(
                    f"<path> #{i}: its {name} animation has {len(vals)} values for the {n} frames of the "
                    "metadata; the file is cut short or was edited, write it again"
                )
            values[name] = vals[:n]
        animated.append((path, values))
    frames: List[Strokes] = []
    for k in range(n):
        for path, values in animated:
            for name, vals in values.items():
                path.set(name, vals[k])
        try:
            sketch = read_svg(ET.tostring(root, encoding="unicode"))
        except SVGError as exc:
            raise SVGError(f"frame {k} of the clip: {exc}") from None
        if frames and (sketch.num_strokes, sketch.points.shape[2]) != (
            frames[0].num_strokes,
            frames[0].points.shape[2],
        ):
            raise SVGError(
                f"frame {k} of the clip reads as {sketch.num_strokes} strokes of {sketch.points.shape[2]} "
                f"control points, frame 0 as {frames[0].num_strokes} of {frames[0].points.shape[2]}; a stroke "
                "vanished (width 0 or no colour) or was edited; write the clip again"
            )
        frames.append(sketch)
    return frames


__all__ = [
    "drawing_frames",
    "animated_svg",
    "write_animated_svg",
    "frames_to_gif",
    "FRAME_CHUNK",
    "video_svg",
    "write_video_svg",
    "read_video_svg",
]
