"""SVG, the file form of a sketch: write strokes out, read them back.

Writing (`to_svg`, `write_svg`) puts one candidate on its canvas: ``viewBox="0 0 W H"``, one
``<path d="M x y C ...">`` per stroke in drawing order, ``fill="none"``, round caps and joins, and
per stroke its full ``stroke-width`` (twice the half-width `Strokes` keeps), ``stroke`` colour and
``stroke-opacity``. Numbers carry 4 decimals, so reading the file back reproduces the control points
to within 1e-4 px.

Reading (`read_svg`) accepts what we write and the common output of vector editors: ``<path>``
with M/L/H/V/C/S/Q/T/Z (absolute and relative), ``<line>``, ``<polyline>``, ``<polygon>``,
``<circle>``/``<ellipse>`` (as four cubic arcs), nested ``<g>`` with ``transform`` (translate, scale,
rotate, skewX, skewY, matrix) and inherited presentation attributes or ``style``. Every subpath
becomes one stroke; lines and quadratics become exact cubics; strokes with fewer segments than the
longest are padded with zero-length segments at their end (which draw nothing new). Anything else
that would draw (text, images, arcs in paths, ``<use>``) raises `SVGError` naming it, instead of
being dropped silently. Filled shapes without a stroke draw no line and are skipped, unless asked for
with ``fills="outline"``: then each closed subpath of one becomes a stroke along its outline
(`clipasso.output.outline`), which makes a tracer's output (vtracer, potrace) a starting sketch.
"""

from __future__ import annotations

import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import ClipassoError
from ..strokes import DEFAULT_HALF_WIDTH, Strokes

log = logging.getLogger(__name__)
SVG_NS = "http://www.w3.org/2000/svg"
_DECIMALS = 4


class SVGError(ClipassoError, ValueError):
    """An SVG that cannot be read as strokes; the message names the problem and what to do."""


# ---------------------------------------------------------------------------------------------- limits
MAX_SVG_BYTES = 8 * 1024 * 1024
"""Largest SVG `read_svg` accepts (file size, or the length of SVG text), in bytes: 8 MiB.

Checked before the file is read. Every limit below is a module constant: a caller who really needs
more can raise it (``clipasso.output.svg.MAX_SVG_BYTES = ...``) and accept the time and memory it costs."""

MAX_SVG_ELEMENTS = 20_000
"""Most XML elements (of any kind, ``<g>`` and ``<metadata>`` included) in one SVG; counted while the
XML is parsed, so a file over it is refused before its whole tree is built."""

MAX_PATH_SEGMENTS = 25_000
"""Most cubic segments one element (a ``<path>``, ``<polyline>``...) may hold, all its subpaths
together; lines and quadratics count as one segment each. Counted while the path data is read."""

MAX_TOTAL_SEGMENTS = 100_000
"""Most cubic segments in the whole SVG; counted while reading, before any tensor is made."""

MAX_STROKES = 20_000
"""Most strokes one SVG may become (subpaths, after long ones are split at `STROKE_SEGMENTS`)."""

STROKE_SEGMENTS = 128
"""Longest stroke `read_svg` makes, in cubic segments. A subpath with more is split into consecutive
strokes of at most this many segments that share their end points (the picture is the same up to
the round joins at the split points, which a round-capped stroke draws anyway), so that padding
every stroke to the longest one costs at most strokes x 128 segments, however long one path is.
Sketches we write have far fewer segments per stroke, so they read back stroke for stroke."""

MAX_CANVAS_SIDE = 4096
"""Largest canvas side, in px, that an SVG's ``viewBox`` (or ``width``/``height``) may give."""

MAX_COORDINATE = 1e6
"""Largest absolute coordinate, in canvas px after transforms, a point may have."""

_SIMPLIFY = (
    "simplify the drawing (fewer paths and nodes, e.g. Inkscape: Path > Simplify) or split it into several files"
)


# ---------------------------------------------------------------------------------------------- write
def _num(v: float) -> str:
    s = f"{v:.{_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _rgb(c: Sequence[float]) -> str:
    r, g, b = (int(round(min(max(float(x), 0.0), 1.0) * 255)) for x in c[:3])
    return f"rgb({r},{g},{b})"


def path_data(points: torch.Tensor) -> str:
    """``d`` attribute of one stroke: ``points`` is ``[P, 2]`` with P = 1 + 3k."""
    pts = points.detach().cpu().double().tolist()
    parts = [f"M {_num(pts[0][0])} {_num(pts[0][1])}"]
    for i in range(1, len(pts), 3):
        seg = " ".join(f"{_num(x)} {_num(y)}" for x, y in pts[i : i + 3])
        parts.append(f"C {seg}")
    return " ".join(parts)


def to_svg(
    strokes: Strokes,
    candidate: int = 0,
    *,
    size: Optional[Tuple[int, int]] = None,
    background: Optional[Sequence[float]] = None,
    pen_width: Optional[float] = None,
    metadata: Optional[dict] = None,
) -> str:
    """SVG text of one candidate of `strokes`.

    size: displayed ``(height, width)`` in px (default the canvas; the drawing is vector, so any size
    is exact). background: an RGB colour for a full-canvas rectangle behind the strokes (default none:
    transparent, as the original CLIPasso wrote). pen_width: draw every stroke with this full width
    in canvas pixels instead of its own. metadata: a JSON-serialisable dict stored in ``<metadata>``
    (the default records stroke count, seed and loss when known).
    """
    if not isinstance(strokes, Strokes):
        raise SVGError(f"to_svg needs a clipasso Strokes value; got {type(strokes).__name__}")
    one = strokes.select(int(candidate)).cpu()
    h, w = one.canvas
    dh, dw = (h, w) if size is None else (int(size[0]), int(size[1]))
    if dh <= 0 or dw <= 0:
        raise SVGError(f"SVG size must be positive (height, width); got {size}")
    if pen_width is not None and not (pen_width > 0 and math.isfinite(pen_width)):
        raise SVGError(f"pen_width must be a positive number of pixels; got {pen_width}")
    info = {"generator": "clipasso", "strokes": one.num_strokes, "segments": one.num_segments, "canvas": [h, w]}
    if one.seeds is not None:
        info["seed"] = one.seeds[0]
    if one.losses is not None:
        info["loss"] = float(one.losses[0])
    if one.iterations is not None:
        info["iteration"] = int(one.iterations[0])
    if one.layers is not None:
        info["layers"] = {n: one.layers.count(n) for n in one.layer_names}
    if metadata:
        info.update(metadata)
    out = [
        f'<svg xmlns="{SVG_NS}" version="1.1" width="{dw}" height="{dh}" viewBox="0 0 {w} {h}">',
        f"  <metadata>{_xml_text(json.dumps(info, sort_keys=True, default=str))}</metadata>",
    ]
    if background is not None:
        out.append(f'  <rect class="background" x="0" y="0" width="{w}" height="{h}" fill="{_rgb(background)}"/>')
    out.append('  <g fill="none" stroke-linecap="round" stroke-linejoin="round">')
    paths = []
    for s in range(one.num_strokes):
        col = one.colors[0, s].tolist()
        width = float(pen_width) if pen_width is not None else 2.0 * float(one.widths[0, s])
        paths.append(
            f'    <path d="{path_data(one.points[0, s])}" stroke="{_rgb(col)}" '
            f'stroke-opacity="{_num(col[3])}" stroke-width="{_num(width)}"/>'
        )
    out.extend(paths if one.layers is None else _layer_groups(paths, one.layers))
    out.append("  </g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _layer_groups(paths: List[str], layers: Sequence[str]) -> List[str]:
    """The path lines in one ``<g id="NAME" class="layer" data-layer="NAME">`` per run of strokes of a layer
    (drawing order is kept: a layer whose strokes come in two runs gets a second group, id NAME-2)."""
    out: List[str] = []
    runs = {}
    for i, (line, name) in enumerate(zip(paths, layers)):
        if i == 0 or layers[i - 1] != name:
            if i:
                out.append("    </g>")
            runs[name] = runs.get(name, 0) + 1
            gid = name if runs[name] == 1 else f"{name}-{runs[name]}"
            out.append(f'    <g id="{gid}" class="layer" data-layer="{name}">')
        out.append("  " + line)
    out.append("    </g>")
    return out


def _xml_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(strokes: Strokes, path, candidate: int = 0, **options) -> Path:
    """Write one candidate to ``path`` (see `to_svg` for options); returns the path."""
    path = Path(path)
    text = to_svg(strokes, candidate, **options)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from ..atomic import write_text_atomic

        write_text_atomic(path, text)  # a temporary file, then a rename: never a half-written SVG
    except OSError as exc:
        raise SVGError(f"cannot write the SVG to {path}: {exc.strerror or exc}") from exc
    return path


# ---------------------------------------------------------------------------------------------- read
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TOKEN = re.compile(r"([MmLlHhVvCcSsQqTtZzAa])|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|([\s,]+)|(.)")
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "Z": 0, "A": 7}
_NAMED = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "lime": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "aqua": (0, 255, 255),
    "magenta": (255, 0, 255),
    "fuchsia": (255, 0, 255),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "silver": (192, 192, 192),
    "maroon": (128, 0, 0),
    "navy": (0, 0, 128),
    "olive": (128, 128, 0),
    "purple": (128, 0, 128),
    "teal": (0, 128, 128),
    "orange": (255, 165, 0),
    "brown": (165, 42, 42),
    "pink": (255, 192, 203),
    "darkgray": (169, 169, 169),
    "darkgrey": (169, 169, 169),
    "lightgray": (211, 211, 211),
    "lightgrey": (211, 211, 211),
    "dimgray": (105, 105, 105),
    "dimgrey": (105, 105, 105),
}
# elements that never draw: skipped with their children
_IGNORED = {
    "metadata",
    "title",
    "desc",
    "defs",
    "style",
    "script",
    "namedview",
    "sodipodi:namedview",
    "clipPath",
    "mask",
    "pattern",
    "linearGradient",
    "radialGradient",
    "filter",
    "symbol",
    "marker",
}
_INHERITED = ("stroke", "stroke-width", "stroke-opacity", "opacity", "fill", "fill-opacity", "display", "visibility")

Affine = Tuple[float, float, float, float, float, float]  # a b c d e f: x' = a x + c y + e, y' = b x + d y + f
_IDENTITY: Affine = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def _compose(m: Affine, n: Affine) -> Affine:
    """m after n (apply n first)."""
    a, b, c, d, e, f = m
    a2, b2, c2, d2, e2, f2 = n
    return (
        a * a2 + c * b2,
        b * a2 + d * b2,
        a * c2 + c * d2,
        b * c2 + d * d2,
        a * e2 + c * f2 + e,
        b * e2 + d * f2 + f,
    )


def _parse_transform(text: str, where: str) -> Affine:
    m = _IDENTITY
    pos = 0
    text = text.strip()
    for match in re.finditer(r"\s*([A-Za-z]+)\s*\(([^)]*)\)\s*,?", text):
        if match.start() != pos:
            raise SVGError(f"{where}: cannot read transform {text!r} near {text[pos : match.start() + 10]!r}")
        pos = match.end()
        name, args = match.group(1), [float(v) for v in _NUMBER.findall(match.group(2))]
        if not all(math.isfinite(v) and abs(v) <= 1e9 for v in args):
            raise SVGError(
                f"{where}: transform {name}({match.group(2).strip()}) has a number that is not "
                "finite or is absurdly large; fix the transform"
            )
        n = len(args)
        if name == "matrix" and n == 6:
            t = tuple(args)
        elif name == "translate" and n in (1, 2):
            t = (1.0, 0.0, 0.0, 1.0, args[0], args[1] if n == 2 else 0.0)
        elif name == "scale" and n in (1, 2):
            t = (args[0], 0.0, 0.0, args[1] if n == 2 else args[0], 0.0, 0.0)
        elif name == "rotate" and n in (1, 3):
            r = math.radians(args[0])
            t = (math.cos(r), math.sin(r), -math.sin(r), math.cos(r), 0.0, 0.0)
            if n == 3:
                cx, cy = args[1], args[2]
                t = _compose((1.0, 0.0, 0.0, 1.0, cx, cy), _compose(t, (1.0, 0.0, 0.0, 1.0, -cx, -cy)))
        elif name == "skewX" and n == 1:
            t = (1.0, 0.0, math.tan(math.radians(args[0])), 1.0, 0.0, 0.0)
        elif name == "skewY" and n == 1:
            t = (1.0, math.tan(math.radians(args[0])), 0.0, 1.0, 0.0, 0.0)
        else:
            raise SVGError(
                f"{where}: unsupported transform {name}({match.group(2).strip()}); "
                "use translate, scale, rotate, skewX, skewY or matrix"
            )
        m = _compose(m, t)
    if pos != len(text):
        raise SVGError(f"{where}: cannot read transform {text!r}")
    return m


def _parse_color(value: str, where: str) -> Optional[Tuple[float, float, float]]:
    v = value.strip()
    low = v.lower()
    if low in ("none", "transparent"):
        return None
    if low == "currentcolor":
        return (0.0, 0.0, 0.0)
    if low.startswith("#"):
        hx = low[1:]
        if len(hx) in (3, 4) and all(ch in "0123456789abcdef" for ch in hx):
            return tuple(int(ch * 2, 16) / 255 for ch in hx[:3])
        if len(hx) in (6, 8) and all(ch in "0123456789abcdef" for ch in hx):
            return tuple(int(hx[i : i + 2], 16) / 255 for i in (0, 2, 4))
        raise SVGError(f"{where}: cannot read colour {value!r}")
    m = re.fullmatch(r"rgba?\(([^)]*)\)", low)
    if m:
        parts = [p.strip() for p in re.split(r"[,\s/]+", m.group(1).strip()) if p.strip()]
        if len(parts) < 3:
            raise SVGError(f"{where}: cannot read colour {value!r}")
        out = []
        for p in parts[:3]:
            try:
                out.append(float(p[:-1]) / 100 if p.endswith("%") else float(p) / 255)
            except ValueError:
                raise SVGError(f"{where}: cannot read colour {value!r}") from None
            if not math.isfinite(out[-1]):
                raise SVGError(
                    f"{where}: colour {value!r} has a number that is not finite; use rgb(r,g,b) with values in 0..255"
                )
        return tuple(min(max(x, 0.0), 1.0) for x in out)
    if low in _NAMED:
        return tuple(x / 255 for x in _NAMED[low])
    if low.startswith("url("):
        raise SVGError(f"{where}: gradient or pattern strokes ({value}) are not supported; use a plain colour")
    raise SVGError(f"{where}: unknown colour {value!r}; use #rrggbb, rgb(r,g,b) or a basic colour name")


def _length(value: str, where: str, what: str) -> float:
    v = value.strip()
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(px)?", v)
    if not m:
        raise SVGError(f"{where}: cannot read {what} {value!r}; give a plain number of pixels")
    out = float(m.group(1))
    if not math.isfinite(out):
        raise SVGError(f"{where}: {what} {value!r} is not a finite number; give a plain number of pixels")
    return out


def _fraction(value: str, where: str, what: str) -> float:
    v = value.strip()
    try:
        out = float(v[:-1]) / 100 if v.endswith("%") else float(v)
    except ValueError:
        raise SVGError(f"{where}: cannot read {what} {value!r}; give a number in 0..1") from None
    if not math.isfinite(out):
        raise SVGError(f"{where}: {what} {value!r} is not a finite number; give a number in 0..1")
    return out


def _float_attr(el, name, where, default=0.0) -> float:
    v = el.get(name)
    return default if v is None else _length(v, where, name)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _style_of(el) -> Dict[str, str]:
    out = {}
    for k in _INHERITED + ("transform",):
        if el.get(k) is not None:
            out[k] = el.get(k)
    for item in (el.get("style") or "").split(";"):
        if ":" in item:
            k, v = item.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _line_cubic(p0, p1):
    (x0, y0), (x1, y1) = p0, p1
    return [(x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3), (x0 + 2 * (x1 - x0) / 3, y0 + 2 * (y1 - y0) / 3), (x1, y1)]


def _quad_cubic(p0, q, p1):
    return [
        (p0[0] + 2 / 3 * (q[0] - p0[0]), p0[1] + 2 / 3 * (q[1] - p0[1])),
        (p1[0] + 2 / 3 * (q[0] - p1[0]), p1[1] + 2 / 3 * (q[1] - p1[1])),
        p1,
    ]


class _Budget:
    """Running counts checked against the limits while the SVG is read (nothing big is built first)."""

    def __init__(self):
        self.total = 0  # cubic segments so far, whole file
        self.element = 0  # cubic segments of the element being read

    def start_element(self):
        self.element = 0

    def add(self, n: int, where: str):
        self.element += n
        self.total += n
        if self.element > MAX_PATH_SEGMENTS:
            raise SVGError(
                f"{where}: more than {MAX_PATH_SEGMENTS} cubic segments in one element, the limit "
                f"(clipasso.output.svg.MAX_PATH_SEGMENTS); {_SIMPLIFY}"
            )
        if self.total > MAX_TOTAL_SEGMENTS:
            raise SVGError(
                f"{where}: the SVG has more than {MAX_TOTAL_SEGMENTS} cubic segments in all, the limit "
                f"(clipasso.output.svg.MAX_TOTAL_SEGMENTS); {_SIMPLIFY}"
            )


class _PathTokens:
    """The path data as a stream of commands (str) and numbers (float), read one at a time."""

    def __init__(self, d: str, where: str):
        self._it = _TOKEN.finditer(d or "")
        self._where = where
        self._next = self._pull()

    def _pull(self):
        for m in self._it:
            cmd, num, _space, bad = m.groups()
            if bad is not None:
                raise SVGError(f"{self._where}: unexpected character {bad!r} at position {m.start()} of the path data")
            if cmd is not None:
                return cmd
            if num is not None:
                return float(num)
        return None

    def peek(self):
        return self._next

    def take(self):
        tok, self._next = self._next, self._pull()
        return tok


def _path_subpaths(d: str, where: str, budget: Optional[_Budget] = None) -> List[List[Tuple[float, float]]]:
    """Subpaths of a path ``d`` as lists of cubic control points (1 + 3k each)."""
    budget = budget if budget is not None else _Budget()
    toks = _PathTokens(d, where)
    subpaths: List[List[Tuple[float, float]]] = []
    cur: Optional[List[Tuple[float, float]]] = None
    x = y = sx = sy = 0.0
    last_ctrl = None  # (kind, point) of the previous C/S or Q/T for smooth continuations
    cmd = None
    if toks.peek() is not None and not isinstance(toks.peek(), str):
        raise SVGError(f"{where}: path data must start with a command (M); got a number")
    while toks.peek() is not None:
        if isinstance(toks.peek(), str):
            cmd = toks.take()
        elif cmd is None:
            raise SVGError(f"{where}: path data must start with M")
        up = cmd.upper()
        if up == "A":
            raise SVGError(
                f"{where}: elliptical arc commands (A/a) are not supported; convert arcs to "
                "Bezier curves first (e.g. Inkscape: Path > Object to Path, or 'Flatten/Convert arcs')"
            )
        n = _ARGS[up]
        if up != "Z" and cur is None and up != "M":
            raise SVGError(f"{where}: path data must start with M (moveto); got {cmd}")
        args = []
        for _ in range(n):
            if not isinstance(toks.peek(), float):
                raise SVGError(f"{where}: command {cmd} needs {n} numbers; the path data ends or breaks early")
            args.append(toks.take())
        rel = cmd.islower()
        ox, oy = (x, y) if rel else (0.0, 0.0)
        if up == "M":
            x, y = ox + args[0], oy + args[1]
            cur = [(x, y)]
            subpaths.append(cur)
            sx, sy = x, y
            cmd = "l" if rel else "L"  # further pairs are implicit linetos
            last_ctrl = None
            continue
        if up == "Z":
            if cur is not None and (x, y) != (sx, sy):
                budget.add(1, where)
                cur.extend(_line_cubic((x, y), (sx, sy)))
            x, y = sx, sy
            # a new segment after Z without M starts a new subpath at the same point
            cur = [(x, y)]
            subpaths.append(cur)
            last_ctrl = None
            if isinstance(toks.peek(), float):
                raise SVGError(f"{where}: numbers after Z/z with no command; the path data is broken")
            continue
        budget.add(1, where)
        p0 = (x, y)
        if up == "L":
            p1 = (ox + args[0], oy + args[1])
            cur.extend(_line_cubic(p0, p1))
            last_ctrl = None
        elif up == "H":
            p1 = (ox + args[0], y)
            cur.extend(_line_cubic(p0, p1))
            last_ctrl = None
        elif up == "V":
            p1 = (x, oy + args[0])
            cur.extend(_line_cubic(p0, p1))
            last_ctrl = None
        elif up == "C":
            c1 = (ox + args[0], oy + args[1])
            c2 = (ox + args[2], oy + args[3])
            p1 = (ox + args[4], oy + args[5])
            cur.extend([c1, c2, p1])
            last_ctrl = ("C", c2)
        elif up == "S":
            c1 = (2 * x - last_ctrl[1][0], 2 * y - last_ctrl[1][1]) if last_ctrl and last_ctrl[0] == "C" else p0
            c2 = (ox + args[0], oy + args[1])
            p1 = (ox + args[2], oy + args[3])
            cur.extend([c1, c2, p1])
            last_ctrl = ("C", c2)
        elif up == "Q":
            q = (ox + args[0], oy + args[1])
            p1 = (ox + args[2], oy + args[3])
            cur.extend(_quad_cubic(p0, q, p1))
            last_ctrl = ("Q", q)
        elif up == "T":
            q = (2 * x - last_ctrl[1][0], 2 * y - last_ctrl[1][1]) if last_ctrl and last_ctrl[0] == "Q" else p0
            p1 = (ox + args[0], oy + args[1])
            cur.extend(_quad_cubic(p0, q, p1))
            last_ctrl = ("Q", q)
        x, y = p1
    return [sp for sp in subpaths if len(sp) >= 4]


def _ellipse_cubics(cx, cy, rx, ry):
    k = 0.5522847498307936  # 4/3 * (sqrt(2) - 1): quarter circle as one cubic
    pts = [(cx + rx, cy)]
    quads = [((1, 0), (0, 1)), ((0, 1), (-1, 0)), ((-1, 0), (0, -1)), ((0, -1), (1, 0))]
    for (ax, ay), (bx, by) in quads:
        pts += [
            (cx + rx * (ax + k * bx), cy + ry * (ay + k * by)),
            (cx + rx * (bx + k * ax), cy + ry * (by + k * ay)),
            (cx + rx * bx, cy + ry * by),
        ]
    return pts


def _element_subpaths(el, tag: str, where: str, budget: Optional[_Budget] = None):
    budget = budget if budget is not None else _Budget()
    budget.start_element()
    if tag == "path":
        return _path_subpaths(el.get("d", ""), where, budget)
    if tag == "line":
        p0 = (_float_attr(el, "x1", where), _float_attr(el, "y1", where))
        p1 = (_float_attr(el, "x2", where), _float_attr(el, "y2", where))
        budget.add(1, where)
        return [[p0] + _line_cubic(p0, p1)]
    if tag in ("polyline", "polygon"):
        text = el.get("points", "")
        # a point needs at least 2 characters per number: refuse a huge list before splitting it
        if len(text) > 64 * (MAX_PATH_SEGMENTS + 1):
            raise SVGError(
                f"{where}: 'points' is too long ({len(text)} characters) for the limit of "
                f"{MAX_PATH_SEGMENTS} segments per element; {_SIMPLIFY}"
            )
        nums = [float(v) for v in _NUMBER.findall(text)]
        if len(nums) < 4 or len(nums) % 2:
            raise SVGError(f"{where}: 'points' needs an even count of at least 4 numbers")
        pts = list(zip(nums[0::2], nums[1::2]))
        if tag == "polygon" and pts[-1] != pts[0]:
            pts.append(pts[0])
        budget.add(len(pts) - 1, where)
        out = [pts[0]]
        for a, b in zip(pts[:-1], pts[1:]):
            out += _line_cubic(a, b)
        return [out]
    if tag in ("circle", "ellipse"):
        cx, cy = _float_attr(el, "cx", where), _float_attr(el, "cy", where)
        if tag == "circle":
            rx = ry = _float_attr(el, "r", where)
        else:
            rx, ry = _float_attr(el, "rx", where), _float_attr(el, "ry", where)
        if rx <= 0 or ry <= 0:
            return []
        budget.add(4, where)
        return [_ellipse_cubics(cx, cy, rx, ry)]
    return None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _too_big(size: int, what: str) -> SVGError:
    return SVGError(
        f"{what} is {_mb(size)}, over the {_mb(MAX_SVG_BYTES)} limit for an SVG "
        f"(clipasso.output.svg.MAX_SVG_BYTES); {_SIMPLIFY}"
    )


def _source_text(source) -> str:
    """The SVG text of `source` (text, bytes or a file path), refusing an over-large one before reading it."""
    if isinstance(source, (str, bytes)) and not source.strip():
        raise SVGError("the SVG is empty: give SVG markup or a path to an .svg file")
    if isinstance(source, (bytes, bytearray)):
        if len(source) > MAX_SVG_BYTES:
            raise _too_big(len(source), "the SVG data")
        return bytes(source).decode("utf-8", errors="replace")
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("<")):
        path = Path(source)
        if not path.is_file():
            raise SVGError(f"SVG file not found: {path}")
        try:
            size = path.stat().st_size
            if size > MAX_SVG_BYTES:
                raise _too_big(size, f"the SVG file {path}")
            data = path.read_bytes()
        except OSError as exc:
            raise SVGError(f"cannot read the SVG file {path}: {exc.strerror or exc}") from exc
        if not data.strip():
            raise SVGError(f"the SVG file {path} is empty: give an .svg file with a drawing in it")
        head = data.lstrip()[:1]
        if b"\0" in data[:4096] or head != b"<":
            raise SVGError(
                f"{path} is not an SVG document: it does not start with XML markup ('<') "
                "(an image or other binary file?); give an .svg file"
            )
        return data.decode("utf-8", errors="replace")
    if isinstance(source, str):
        if len(source) > MAX_SVG_BYTES:
            raise _too_big(len(source), "the SVG text")
        return source
    raise SVGError(f"read_svg needs SVG text, bytes or a file path; got {type(source).__name__}")


def _load_root(source) -> ET.Element:
    text = _source_text(source)
    if not text.strip():
        raise SVGError("the SVG is empty: give SVG markup or a path to an .svg file")
    if "<!ENTITY" in text:
        # entity declarations are how XML bombs (billion laughs) and external-file reads are made;
        # no SVG editor needs them for a drawing
        raise SVGError(
            "the SVG declares XML entities (<!ENTITY ...> in its DOCTYPE), which are refused "
            "(they can expand to gigabytes); remove the DOCTYPE block or re-save the file "
            "from a vector editor"
        )
    data = text.strip().encode("utf-8")
    parser = ET.XMLPullParser(events=("start",))
    count = 0
    root = None
    step = 1 << 16
    too_many = SVGError(
        f"the SVG has more than {MAX_SVG_ELEMENTS} XML elements, the limit "
        f"(clipasso.output.svg.MAX_SVG_ELEMENTS); {_SIMPLIFY}"
    )
    try:
        # fed a slice at a time, counting elements as they open: a file with too many is refused
        # before its whole tree exists
        for i in range(0, len(data) + step, step):
            if i < len(data):
                parser.feed(data[i : i + step])
            else:
                parser.close()
            for _event, el in parser.read_events():
                if root is None:
                    root = el
                count += 1
            if count > MAX_SVG_ELEMENTS:
                raise too_many
    except ET.ParseError as exc:
        raise SVGError(f"the SVG is not well-formed XML ({exc}); the file is broken or truncated") from None
    if root is None:
        raise SVGError("the SVG has no XML elements; give SVG markup or an .svg file")
    if _local(root.tag) != "svg":
        raise SVGError(f"not an SVG document: the root element is <{_local(root.tag)}>, not <svg>")
    return root


_SIZE_HINT = f"each must be a finite number of pixels in (0, {MAX_CANVAS_SIDE}]"


def _check_side(v: float, what: str, given: str):
    if not (math.isfinite(v) and 0 < v <= MAX_CANVAS_SIDE):
        raise SVGError(
            f"<svg>: {what} {given!r} gives a canvas side of {v:g} px; {_SIZE_HINT} "
            f"(clipasso.output.svg.MAX_CANVAS_SIDE); fix the SVG's viewBox, width and height, "
            f'e.g. viewBox="0 0 224 224"'
        )


def _plain_number(value: Optional[str]) -> Optional[float]:
    """A width/height that is a plain number (or px); None when absent or in other units (mm, %)."""
    if value is None:
        return None
    v = value.strip().lower()
    if v.endswith("px"):
        v = v[:-2].strip()
    if v in ("inf", "+inf", "-inf", "infinity", "nan"):
        return float(v)
    if not _NUMBER.fullmatch(v):
        return None
    return float(v)


def _canvas_of(root) -> Tuple[Tuple[int, int], Affine]:
    vb = root.get("viewBox")
    for name in ("width", "height"):  # the display size: must be sane when it is a plain number
        v = _plain_number(root.get(name))
        if v is not None:
            _check_side(v, name, root.get(name))
    if vb is not None and vb.strip():
        parts = [p for p in re.split(r"[\s,]+", vb.strip()) if p]
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            nums = []
        if len(nums) != 4 or not all(
            _NUMBER.fullmatch(p) or p.lower().lstrip("+-") in ("inf", "infinity", "nan") for p in parts
        ):
            raise SVGError(
                f"<svg>: cannot read viewBox {vb!r}; it needs four numbers 'min-x min-y width height' "
                f'with positive size, e.g. viewBox="0 0 224 224"'
            )
        mx, my, w, h = nums
        _check_side(w, "viewBox width in", vb)
        _check_side(h, "viewBox height in", vb)
        if not (math.isfinite(mx) and math.isfinite(my) and abs(mx) <= MAX_COORDINATE and abs(my) <= MAX_COORDINATE):
            raise SVGError(
                f"<svg>: viewBox {vb!r} has an origin that is not finite or beyond "
                f'{MAX_COORDINATE:g} px; fix the viewBox, e.g. viewBox="0 0 224 224"'
            )
        return (max(1, int(round(h))), max(1, int(round(w)))), (1.0, 0.0, 0.0, 1.0, -mx, -my)
    w, h = root.get("width"), root.get("height")
    if w is None or h is None:
        raise SVGError("<svg>: the canvas size is unknown; give the root a viewBox or width and height")
    wv, hv = _length(w, "<svg>", "width"), _length(h, "<svg>", "height")
    if wv <= 0 or hv <= 0:
        raise SVGError(f"<svg>: width and height must be positive; got {wv} x {hv}")
    _check_side(wv, "width", w)
    _check_side(hv, "height", h)
    return (max(1, int(round(hv))), max(1, int(round(wv)))), _IDENTITY


def _split(pts: List[Tuple[float, float]]) -> List[List[Tuple[float, float]]]:
    """A subpath of more than `STROKE_SEGMENTS` segments as consecutive strokes sharing end points."""
    step = 3 * STROKE_SEGMENTS
    if len(pts) <= step + 1:
        return [pts]
    return [pts[i : i + step + 1] for i in range(0, len(pts) - 1, step)]


FILL_MODES = ("ignore", "outline")
"""What `read_svg` does with a filled shape that has no stroke: ``ignore`` it (the default: a sketch is
strokes), or read each closed subpath of its ``outline`` as one stroke (a tracer's output as a sketch)."""

OUTLINE_SEGMENTS = 16
"""Cubic segments of each outline stroke with ``fills="outline"`` (the ``segments`` argument's default): a
traced horse's silhouette keeps its legs and head at 16; at 8 it is a blob with stumps."""

MIN_OUTLINE_AREA = 0.0005
"""With ``fills="outline"``: a closed subpath enclosing less than this share of the canvas area is dropped
as a speck (a tracer's noise; 0.05 %: 25 px² on a 224 x 224 canvas)."""

BACKGROUND_AREA = 0.9
"""With ``fills="outline"``: a closed subpath enclosing at least this share of the canvas area is taken
for the background (tracers start with a canvas-sized shape) and dropped."""


def _rect_subpaths(el, where: str, budget: _Budget):
    """A filled ``<rect>`` (rounded corners included) as one closed subpath of cubics."""
    x, y = _float_attr(el, "x", where), _float_attr(el, "y", where)
    w, h = _float_attr(el, "width", where), _float_attr(el, "height", where)
    if w <= 0 or h <= 0:
        return []
    rx_attr, ry_attr = el.get("rx"), el.get("ry")
    rx = _length(rx_attr, where, "rx") if rx_attr is not None else None
    ry = _length(ry_attr, where, "ry") if ry_attr is not None else None
    rx = ry if rx is None else rx
    ry = rx if ry is None else ry
    rx, ry = min(max(rx or 0.0, 0.0), w / 2), min(max(ry or 0.0, 0.0), h / 2)
    if rx <= 0 or ry <= 0:
        corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]
        budget.add(4, where)
        out = [corners[0]]
        for a, b in zip(corners[:-1], corners[1:]):
            out += _line_cubic(a, b)
        return [out]
    k = 0.5522847498307936  # a quarter ellipse as one cubic, as in _ellipse_cubics
    budget.add(8, where)
    out = [(x + rx, y)]
    # each side, then the corner after it: (where the side ends, where the corner ends, the corner's two controls)
    for (lx, ly), (ex, ey), (cx1, cy1), (cx2, cy2) in (
        ((x + w - rx, y), (x + w, y + ry), (x + w - rx + k * rx, y), (x + w, y + ry - k * ry)),
        ((x + w, y + h - ry), (x + w - rx, y + h), (x + w, y + h - ry + k * ry), (x + w - rx + k * rx, y + h)),
        ((x + rx, y + h), (x, y + h - ry), (x + rx - k * rx, y + h), (x, y + h - ry + k * ry)),
        ((x, y + ry), (x + rx, y), (x, y + ry - k * ry), (x + rx - k * rx, y)),
    ):
        out += _line_cubic(out[-1], (lx, ly))
        out += [(cx1, cy1), (cx2, cy2), (ex, ey)]
    return [out]


def _outline_color(value, where: str = "outline_color") -> Optional[Tuple[float, float, float, float]]:
    if value is None:
        return None
    if isinstance(value, str):
        rgb = _parse_color(value, where)
        if rgb is None:
            raise SVGError(
                f"{where} {value!r} draws nothing; give a colour such as 'black' or #000000, or None to "
                "keep each shape's fill colour"
            )
        return (*rgb, 1.0)
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        vals = []
    if len(vals) not in (3, 4) or not all(0.0 <= v <= 1.0 for v in vals):
        raise SVGError(f"{where} must be a colour name, #rrggbb or 3-4 numbers in 0..1 (RGB[A]); got {value!r}")
    return (vals[0], vals[1], vals[2], vals[3] if len(vals) == 4 else 1.0)


def read_svg(
    source,
    width: Optional[float] = None,
    *,
    fills: str = "ignore",
    segments: int = OUTLINE_SEGMENTS,
    max_outlines: Optional[int] = None,
    outline_color=None,
) -> Strokes:
    """Strokes (one candidate) from SVG text, bytes or a file path.

    Stroke widths come from ``stroke-width`` (SVG default 1) halved and scaled by the transforms;
    ``width`` overrides them with one half-width for every stroke. Stroke colour and opacity
    (``stroke-opacity`` times inherited ``opacity``) are kept. Elements with ``stroke="none"`` or
    hidden are skipped; a full-canvas ``<rect class="background">`` as `to_svg` writes it is ignored.

    Filled shapes with no stroke (what tracers such as vtracer and potrace write) are not strokes and
    are skipped, unless ``fills="outline"``: then each closed subpath of such a shape (``<rect>`` too)
    becomes one closed stroke along its outline, fitted with ``segments`` cubic segments (every outline
    has 1 + 3 segments points); its colour is the fill colour and fill opacity, or ``outline_color``
    (a colour name, #rrggbb or RGB[A] numbers in 0..1) for all of them, and its half-width ``width``
    or the sketch default (1.5). Subpaths enclosing less than `MIN_OUTLINE_AREA` of the canvas
    (specks) or at least `BACKGROUND_AREA` of it (the background) are dropped; of the rest, the
    largest ``max_outlines`` (default: as many as `MAX_STROKES` allows) are kept, in document order,
    and what was dropped is logged. Shapes that are stroked keep their stroke, as without the option.

    Size limits (`MAX_SVG_BYTES`, `MAX_SVG_ELEMENTS`, `MAX_PATH_SEGMENTS`, `MAX_TOTAL_SEGMENTS`,
    `MAX_STROKES`, `MAX_CANVAS_SIDE`) are checked while reading and raise `SVGError` before anything
    large is built. A subpath longer than `STROKE_SEGMENTS` becomes several consecutive strokes.
    """
    _check_read_options(width, fills, segments, max_outlines)
    reader = _Reader(fills == "outline", _outline_color(outline_color))
    root = _load_root(source)
    canvas, base = _canvas_of(root)
    reader.canvas_area = float(canvas[0] * canvas[1])
    reader.visit(root, {}, base, 1.0)
    found = reader.found
    if reader.shapes:
        found = _with_outlines(
            found,
            reader.shapes,
            segments,
            max_outlines,
            float(width) if width is not None else DEFAULT_HALF_WIDTH,
            reader.counter,
            reader.layer_of,
        )
    if not found:
        raise _nothing_to_read(reader.outline, reader.counter)
    strokes = _strokes_of(found, width, canvas)
    if reader.layer_of:  # strokes outside every layer group go to the layer "other"
        strokes = strokes.replace(layers=tuple(reader.layer_of.get(id(f), OTHER_LAYER) for f in found))
    return strokes


def _check_read_options(width, fills, segments, max_outlines) -> None:
    if width is not None and not (isinstance(width, (int, float)) and width > 0 and math.isfinite(width)):
        raise SVGError(f"width must be a positive half-width in pixels; got {width}")
    if fills not in FILL_MODES:
        raise SVGError(
            f"fills must be one of {', '.join(FILL_MODES)} (what to do with filled shapes that have no "
            f"stroke); got {fills!r}"
        )
    if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= STROKE_SEGMENTS:
        raise SVGError(
            f"segments must be a whole number of cubic segments per outline in 1..{STROKE_SEGMENTS}; got {segments!r}"
        )
    if max_outlines is not None and (
        isinstance(max_outlines, bool) or not isinstance(max_outlines, int) or max_outlines < 1
    ):
        raise SVGError(
            f"max_outlines must be a whole number of strokes, 1 or more (None: up to MAX_STROKES); got {max_outlines!r}"
        )


class _Reader:
    """One walk over the element tree: strokes found so far, outline candidates (``fills="outline"``),
    counts for the messages, and the running size budget."""

    def __init__(self, outline: bool, fixed_color):
        self.outline = outline
        self.fixed_color = fixed_color
        self.canvas_area = 1.0
        self.found: List[Tuple[List[Tuple[float, float]], float, Tuple[float, float, float, float]]] = []
        # outline candidates: (strokes found before it, enclosed area, closed polyline, colour)
        self.shapes: List[Tuple[int, float, object, Tuple[float, float, float, float]]] = []
        self.counter = {"n": 0, "fill_only": 0, "specks": 0, "background": 0}
        self.budget = _Budget()
        self.layer: Optional[str] = None  # the layer group being read (to_svg's class="layer", Inkscape's layers)
        self.layer_of: Dict[int, str] = {}  # id() of a found stroke or outline shape -> its layer

    @staticmethod
    def to_canvas(sp, mat: Affine, where: str):
        a, b, c, d, e, f = mat
        pts = [(a * px + c * py + e, b * px + d * py + f) for px, py in sp]
        for px, py in pts:
            if not (abs(px) <= MAX_COORDINATE and abs(py) <= MAX_COORDINATE):  # False for NaN too
                raise SVGError(
                    f"{where}: a coordinate ({px:g}, {py:g}) is not finite or is beyond "
                    f"{MAX_COORDINATE:g} px from the origin; fix the path data or transforms"
                )
        return pts

    @staticmethod
    def stroke_of(style, where):
        stroke = _parse_color(style.get("stroke", "none"), where)
        if stroke is None:
            return None, 0.0
        return stroke, _length(style.get("stroke-width", "1"), where, "stroke-width")

    def add_outlines(self, subs, style, mat, opacity, where):
        from . import outline as geometry

        fill_text = style.get("fill", "black")  # SVG's initial fill is black
        if fill_text.strip().lower().startswith("url(") and self.fixed_color is not None:
            fill = self.fixed_color[:3]
        else:
            try:
                fill = _parse_color(fill_text, where)
            except SVGError as exc:
                raise SVGError(
                    f"{exc} (the fill of a shape read as an outline; outline_color='black' draws "
                    "every outline in one colour whatever the fill)"
                ) from None
        if fill is None:
            return
        alpha = _fraction(style.get("fill-opacity", "1"), where, "fill-opacity") * opacity
        alpha = min(max(alpha, 0.0), 1.0)
        if alpha <= 0.0:
            return
        color = self.fixed_color if self.fixed_color is not None else (*fill, alpha)
        for sp in subs:
            poly = geometry.flatten(self.to_canvas(sp, mat, where))
            enclosed = geometry.area(poly)
            if enclosed < MIN_OUTLINE_AREA * self.canvas_area:
                self.counter["specks"] += 1
            elif enclosed >= BACKGROUND_AREA * self.canvas_area:
                self.counter["background"] += 1
            else:
                self.shapes.append((len(self.found), enclosed, poly, color))
                if self.layer is not None:
                    self.layer_of[id(self.shapes[-1])] = self.layer

    def visit(self, el, style: Dict[str, str], mat: Affine, opacity: float):
        tag = _local(el.tag)
        if tag in _IGNORED or (":" in el.tag and not el.tag.startswith("{" + SVG_NS)):
            return
        self.counter["n"] += 1
        where = f"<{tag}> #{self.counter['n']}" + (f" id={el.get('id')!r}" if el.get("id") else "")
        own = _style_of(el)
        if "transform" in own:
            mat = _compose(mat, _parse_transform(own.pop("transform"), where))
        if "opacity" in own:
            opacity *= _fraction(own.pop("opacity"), where, "opacity")
        style = {**style, **own}
        if style.get("display") == "none" or style.get("visibility") in ("hidden", "collapse"):
            return
        if tag in ("svg", "g", "a", "switch"):
            outer = self.layer
            if tag == "g":
                self.layer = _layer_name(el) or outer
            for child in el:
                self.visit(child, style, mat, opacity)
            self.layer = outer
            return
        if tag == "rect" and "background" in (el.get("class") or "").split():
            return
        subs = _element_subpaths(el, tag, where, self.budget)
        if subs is None and tag == "rect" and self.outline and self.stroke_of(style, where)[1] <= 0:
            subs = _rect_subpaths(el, where, self.budget)  # a filled rectangle: only its outline is read
        if subs is None:
            raise SVGError(
                f"{where}: <{tag}> elements are not supported in a stroke sketch; only paths, "
                "lines, polylines, polygons, circles and ellipses (convert text and shapes to paths)"
            )
        stroke, sw = self.stroke_of(style, where)
        if stroke is None or sw <= 0:  # not stroked: draws no line (a fill-only shape is not a stroke)
            if tag != "line" and style.get("fill", "black").strip().lower() not in ("none", "transparent"):
                self.counter["fill_only"] += 1
                if self.outline:
                    self.add_outlines(subs, style, mat, opacity, where)
            return
        self.add_strokes(subs, style, mat, opacity, where, stroke, sw)

    def add_strokes(self, subs, style, mat, opacity, where, stroke, sw):
        a, b, c, d, e, f = mat
        scale = math.sqrt(abs(a * d - b * c))
        half = 0.5 * sw * scale
        if not (math.isfinite(half) and half <= MAX_COORDINATE):
            raise SVGError(
                f"{where}: stroke-width {sw:g} (after transforms) is absurdly large; give a width of a few pixels"
            )
        alpha = _fraction(style.get("stroke-opacity", "1"), where, "stroke-opacity") * opacity
        alpha = min(max(alpha, 0.0), 1.0)
        for sp in subs:
            for part in _split(self.to_canvas(sp, mat, where)):
                if len(self.found) >= MAX_STROKES:
                    raise SVGError(
                        f"{where}: the SVG makes more than {MAX_STROKES} strokes, the limit "
                        f"(clipasso.output.svg.MAX_STROKES); {_SIMPLIFY}"
                    )
                self.found.append((part, half, (*stroke, alpha)))
                if self.layer is not None:
                    self.layer_of[id(self.found[-1])] = self.layer


OTHER_LAYER = "other"  # the layer of strokes outside every layer group of a layered SVG
_INKSCAPE = "{http://www.inkscape.org/namespaces/inkscape}"


def _layer_name(el) -> Optional[str]:
    """The layer a ``<g>`` stands for, or None: to_svg's ``class="layer"`` groups (``data-layer``, else the
    id) and Inkscape's layers (their label), made a valid layer name."""
    if "layer" in (el.get("class") or "").split():
        name = el.get("data-layer") or el.get("id")
    elif el.get(_INKSCAPE + "groupmode") == "layer":
        name = el.get(_INKSCAPE + "label") or el.get("id")
    else:
        return None
    if not name:
        return None
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip())[:64].strip("-") or "layer"
    return name if name[0].isalpha() else ("layer-" + name)[:64]


def _nothing_to_read(outline: bool, counter) -> SVGError:
    if outline and counter["fill_only"]:
        return SVGError(
            f"the SVG has no stroked paths and no filled shape to outline: of its filled subpaths, "
            f"{counter['specks']} enclose less than {MIN_OUTLINE_AREA:.2%} of the canvas (specks) and "
            f"{counter['background']} cover the whole canvas (background); "
            "trace the picture with less speckle filtering or at a larger size"
        )
    if counter["fill_only"]:
        return SVGError(
            f"the SVG has no stroked paths to read: its {counter['fill_only']} fill-only shape(s) are "
            "not strokes. To read them as strokes along their outlines (a tracer's output: vtracer, "
            "potrace, a vectorize node), pass fills='outline' to read_svg (Load SVG: turn on "
            "fill_shapes)"
        )
    return SVGError("the SVG has no stroked paths to read (fill-only shapes and empty paths are not strokes)")


def _strokes_of(found, width: Optional[float], canvas) -> Strokes:
    p_max = max(len(pts) for pts, _, _ in found)
    # at most MAX_STROKES x (1 + 3 STROKE_SEGMENTS) points: strokes are padded with zero-length segments
    # at their end (they draw nothing new), one stroke at a time
    pts_t = torch.empty((1, len(found), p_max, 2), dtype=torch.float32)
    for i, (pts, _, _) in enumerate(found):
        row = torch.tensor(pts, dtype=torch.float32)
        pts_t[0, i, : len(pts)] = row
        pts_t[0, i, len(pts) :] = row[-1]
    if width is not None:
        widths = torch.full((1, len(found)), float(width))
    else:
        widths = torch.tensor([[max(w, 1e-3) for _, w, _ in found]], dtype=torch.float32)
    colors = torch.tensor([[col for _, _, col in found]], dtype=torch.float32)
    return Strokes(pts_t, widths, colors, canvas)


def _with_outlines(found, shapes, segments: int, max_outlines: Optional[int], half: float, counter, layer_of=None):
    """`found` with the largest outline candidates fitted and put back in document order (up to the cap)."""
    from .outline import fit_closed

    room = MAX_STROKES - len(found)
    limit = room if max_outlines is None else min(room, max_outlines)
    if limit <= 0:
        raise SVGError(
            f"the SVG makes more than {MAX_STROKES} strokes with its outlines, the limit "
            f"(clipasso.output.svg.MAX_STROKES); {_SIMPLIFY}"
        )
    keep = sorted(sorted(range(len(shapes)), key=lambda i: -shapes[i][1])[:limit])
    capped = len(shapes) - len(keep)
    merged, k = [], 0
    for i, stroke in enumerate(found + [None]):
        while k < len(keep) and shapes[keep[k]][0] <= i:
            _pos, _area, poly, color = shapes[keep[k]]
            merged.append((fit_closed(poly, segments), half, color))
            if layer_of is not None and id(shapes[keep[k]]) in layer_of:
                layer_of[id(merged[-1])] = layer_of[id(shapes[keep[k]])]
            k += 1
        if stroke is not None:
            merged.append(stroke)
    dropped = []
    if counter["specks"]:
        dropped.append(f"{counter['specks']} specks under {MIN_OUTLINE_AREA:.2%} of the canvas")
    if counter["background"]:
        dropped.append(f"{counter['background']} canvas-sized background shape(s)")
    if capped:
        dropped.append(f"{capped} smaller outlines over the cap of {limit}")
    log.info(
        "read_svg: %d filled subpath(s) read as outline strokes of %d segments%s",
        len(keep),
        segments,
        f"; dropped {', '.join(dropped)}" if dropped else "",
    )
    return merged
