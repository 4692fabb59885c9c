"""Hostile and broken SVG files, and broken strokes handed to the renderer: each is refused early with a
clear error that says what to do, in bounded time and memory.

Every bad SVG is written as a real file and read through the real `read_svg`, by its path (the CLI and
the Load SVG node's file input) and, where it is text, as markup (the Load SVG node's ``svg_text``
input passes the pasted text to the same `read_svg`). The heavy cases run in a subprocess whose peak
RSS is read back; the light ones are measured with tracemalloc (no torch allocation happens before
the refusal).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from clipasso.output import svg as svgmod
from clipasso.render.raster import rasterize, render
from clipasso.strokes import StrokeError, Strokes
from clipasso.output.svg import SVGError, read_svg

ROOT = Path(__file__).resolve().parents[3]
SIMPLIFY = "simplify the drawing"


def doc(body: str, attrs: str = 'width="100" height="80"') -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" {attrs}>{body}</svg>'


def walk(n: int, rnd: random.Random, size: int = 512, step: float = 4.0) -> str:
    """Path data of a random walk of n cubic segments (integer coordinates: about 18 bytes a segment)."""
    x, y = rnd.uniform(0, size), rnd.uniform(0, size)
    out = [f"M{x:.0f} {y:.0f}"]
    for _ in range(n):
        pts = []
        for _ in range(3):
            x = min(max(x + rnd.uniform(-step, step), 0), size)
            y = min(max(y + rnd.uniform(-step, step), 0), size)
            pts.append(f"{x:.0f} {y:.0f}")
        out.append("C" + " ".join(pts))
    return "".join(out)


def paths_doc(ds, size: int = 512) -> str:
    body = "".join(f'<path d="{d}" stroke="black" stroke-width="3" fill="none"/>' for d in ds)
    return doc(body, f'viewBox="0 0 {size} {size}"')


def long_plus_short() -> str:
    """Issue 15's first file: one path of 20000 segments and 2000 one-segment paths."""
    rnd = random.Random(0)
    return paths_doc([walk(20000, rnd)] + [walk(1, rnd) for _ in range(2000)])


def one_huge_path() -> str:
    """Issue 15's second file: one path of 200000 segments (several MB)."""
    return paths_doc([walk(200000, random.Random(1), size=1024)], size=1024)


LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi"))
    + ']><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><desc>&i;</desc></svg>'
)

PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(64)

MB = 1024 * 1024

# id, content (str or bytes, or a function making it), error type, message parts, seconds, MB (tracemalloc peak)
CASES = [
    (
        "over_size_limit",
        lambda: doc("<!--" + "x" * (svgmod.MAX_SVG_BYTES + 10) + "-->"),
        SVGError,
        ["over the", "MAX_SVG_BYTES", SIMPLIFY],
        2.0,
        1,
    ),
    (
        "too_many_elements",
        lambda: doc("<g/>" * (svgmod.MAX_SVG_ELEMENTS + 5)),
        SVGError,
        ["more than 20000 XML elements", "MAX_SVG_ELEMENTS", SIMPLIFY],
        5.0,
        40,
    ),
    (
        "path_over_segment_limit",
        lambda: doc(f'<path d="M0 0{" l1 1" * (svgmod.MAX_PATH_SEGMENTS + 1)}" stroke="black"/>'),
        SVGError,
        ["more than 25000 cubic segments in one element", "MAX_PATH_SEGMENTS", SIMPLIFY],
        5.0,
        60,
    ),
    (
        "total_over_segment_limit",
        lambda: doc("".join(f'<path d="M0 0{" l1 1" * 20000}" stroke="black"/>' for _ in range(6))),
        SVGError,
        ["more than 100000 cubic segments in all", "MAX_TOTAL_SEGMENTS", SIMPLIFY],
        10.0,
        150,
    ),
    (
        "polyline_over_segment_limit",
        lambda: doc('<polyline points="' + " 1,1" * (svgmod.MAX_PATH_SEGMENTS + 2) + '" stroke="black"/>'),
        SVGError,
        ["more than 25000 cubic segments", SIMPLIFY],
        5.0,
        60,
    ),
    ("viewbox_overflow_inf", doc("", 'viewBox="0 0 1e999 100"'), SVGError, ["viewBox", "finite", "e.g. viewBox"], 1, 1),
    ("viewbox_inf_word", doc("", 'viewBox="0 0 inf 100"'), SVGError, ["viewBox", "e.g. viewBox"], 1, 1),
    ("viewbox_nan", doc("", 'viewBox="0 0 100 nan"'), SVGError, ["viewBox", "e.g. viewBox"], 1, 1),
    ("viewbox_negative", doc("", 'viewBox="0 0 -100 100"'), SVGError, ["viewBox", "e.g. viewBox"], 1, 1),
    ("viewbox_zero", doc("", 'viewBox="0 0 0 0"'), SVGError, ["viewBox", "e.g. viewBox"], 1, 1),
    ("viewbox_absurd", doc("", 'viewBox="0 0 1e9 1e9"'), SVGError, ["viewBox", "4096", "MAX_CANVAS_SIDE"], 1, 1),
    ("viewbox_origin_inf", doc("", 'viewBox="1e999 0 100 100"'), SVGError, ["viewBox", "origin"], 1, 1),
    ("width_inf", doc("", 'width="1e999" height="10"'), SVGError, ["width", "finite", "e.g. viewBox"], 1, 1),
    ("height_nan", doc("", 'width="10" height="nan"'), SVGError, ["height", "finite", "e.g. viewBox"], 1, 1),
    ("width_negative_beside_viewbox", doc("", 'viewBox="0 0 10 10" width="-5"'), SVGError, ["width"], 1, 1),
    (
        "coordinate_overflow",
        doc('<path d="M0 0 L 1e999 5" stroke="black"/>'),
        SVGError,
        ["coordinate", "not finite", "fix the path data"],
        1,
        1,
    ),
    (
        "stroke_width_inf",
        doc('<path d="M0 0 L 5 5" stroke="black" stroke-width="1e999"/>'),
        SVGError,
        ["stroke-width", "finite"],
        1,
        1,
    ),
    (
        "opacity_nan",
        doc('<path d="M0 0 L 5 5" stroke="black" stroke-opacity="nan"/>'),
        SVGError,
        ["stroke-opacity", "give a number in 0..1"],
        1,
        1,
    ),
    (
        "broken_xml",
        doc('<path d="M0 0 L 5 5" stroke="black"/>')[:-9],
        SVGError,
        ["not well-formed", "broken or truncated"],
        1,
        1,
    ),
    ("billion_laughs", LAUGHS, SVGError, ["entities", "remove the DOCTYPE"], 1, 1),
    (
        "arc",
        doc('<path d="M 0 0 A 5 5 0 0 1 10 10" stroke="black"/>'),
        SVGError,
        ["arc", "convert arcs to Bezier"],
        1,
        1,
    ),
    ("text", doc('<text x="0" y="10" stroke="black">hi</text>'), SVGError, ["<text>", "convert text"], 1, 1),
    ("image", doc('<image href="a.png" width="5" height="5"/>'), SVGError, ["<image>", "convert"], 1, 1),
    ("rect", doc('<rect width="5" height="5" stroke="black"/>'), SVGError, ["<rect>", "convert"], 1, 1),
    ("use", doc('<use href="#a"/>'), SVGError, ["<use>", "convert"], 1, 1),
    ("empty_file", "", SVGError, ["empty", "give"], 1, 1),
    ("blank_file", "  \n\t ", SVGError, ["empty", "give"], 1, 1),
    ("html_not_svg", "<html><body>hi</body></html>", SVGError, ["not an SVG document", "<html>"], 1, 1),
    ("png_not_svg", PNG, SVGError, ["not an SVG document", "give an .svg file"], 1, 1),
    (
        "one_200000_segment_path",
        one_huge_path,
        SVGError,
        ["more than 25000 cubic segments in one element", SIMPLIFY],
        10.0,
        150,
    ),
]


def _content(spec):
    return spec() if callable(spec) else spec


def _routes(spec):
    """'file' for every case; 'text' (the Load SVG node's svg_text) for markup that can be pasted."""
    return ["file"] if isinstance(spec, bytes) else ["file", "text"]


PARAMS = [
    pytest.param(cid, spec, err, parts, secs, mb, route, id=f"{cid}-{route}")
    for cid, spec, err, parts, secs, mb in CASES
    for route in ["file", "text"]
    if route in _routes(spec) and not (route == "text" and cid in ("empty_file", "blank_file"))
]


@pytest.mark.parametrize("cid,spec,err,parts,secs,mb,route", PARAMS)
def test_bad_svg_is_refused_clearly_in_bounded_time_and_memory(tmp_path, cid, spec, err, parts, secs, mb, route):
    content = _content(spec)
    path = tmp_path / f"{cid}.svg"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    source = path if route == "file" else path.read_text(encoding="utf-8")
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(err) as info:
            read_svg(source)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    for part in parts:
        assert part in msg, f"{cid}: {part!r} not in {msg!r}"
    assert elapsed < secs, f"{cid}: took {elapsed:.2f} s"
    # what read_svg allocated besides the text it was handed (tracemalloc: Python objects; no torch yet)
    assert peak < mb * MB + 4 * path.stat().st_size, f"{cid}: peak {peak / MB:.1f} MB"


def test_empty_text_route_is_refused():
    for text in ("", "   "):
        with pytest.raises(SVGError, match="empty"):
            read_svg(text)


# ----------------------------------------------------------------------------- heavy cases in a subprocess
_CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    import clipasso.render.raster, clipasso.output.svg
    from clipasso.testing.memory import peak_rss_mib  # the child's own peak, not its parent's
    base = peak_rss_mib()
    t0 = time.perf_counter()
    out = {}
    try:
        s = clipasso.output.svg.read_svg(sys.argv[2])
        out["strokes"], out["segments"] = s.num_strokes, s.num_segments
        out["read_s"] = time.perf_counter() - t0
        r = clipasso.render.raster.render(s)
        out["ink"] = float(r.alpha.mean())
        out["finite"] = bool(r.image.isfinite().all())
    except Exception as exc:
        out["error"], out["message"] = type(exc).__name__, str(exc)
    out["seconds"] = time.perf_counter() - t0
    out["rss_mb"] = peak_rss_mib()
    out["base_mb"] = base
    print(json.dumps(out))
""")


def _run_child(path: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name,make,expect",
    [
        # 2001 strokes padded to 20000 segments used to take 46 s to read and > 19 GB to render
        ("long_plus_short", long_plus_short, "renders"),
        # 200000 segments in one path used to render in 100 s at 6.8 GB: now refused while parsing
        ("one_huge_path", one_huge_path, "refused"),
    ],
)
def test_pathological_files_are_bounded(tmp_path, name, make, expect):
    path = tmp_path / f"{name}.svg"
    path.write_text(make(), encoding="utf-8")
    out = _run_child(path)
    if expect == "renders":
        assert "error" not in out, out
        # the 20000-segment path is split into strokes of at most STROKE_SEGMENTS segments
        assert out["strokes"] == 2000 + -(-20000 // svgmod.STROKE_SEGMENTS)
        assert out["segments"] == svgmod.STROKE_SEGMENTS
        assert out["finite"] and out["ink"] > 0.05
        assert out["seconds"] < 60
    else:
        assert out.get("error") == "SVGError" and SIMPLIFY in out["message"], out
        assert out["seconds"] < 10
    assert out["rss_mb"] < 3 * 1024, out
    assert out["rss_mb"] - out["base_mb"] < 2 * 1024, out


# ----------------------------------------------------------------------------- broken strokes at render time
def _good(s=3, canvas=(32, 32)):
    g = torch.Generator().manual_seed(0)
    return Strokes(
        torch.rand(1, s, 4, 2, generator=g) * 30, torch.full((1, s), 1.5), torch.rand(1, s, 4, generator=g), canvas
    )


def _nan_points(st):
    st.points[0, 1, 2, 0] = float("nan")  # in place, after validation: the frozen value's tensor is mutable


def _inf_width(st):
    st.widths[0, 0] = float("inf")


def _nan_colour(st):
    st.colors[0, 2, 1] = float("nan")


@pytest.mark.parametrize(
    "name,mutate,background,parts",
    [
        ("nan_points_in_place", _nan_points, (1.0, 1.0, 1.0), ["points", "NaN or infinity", "Re-initialise"]),
        ("inf_width_in_place", _inf_width, (1.0, 1.0, 1.0), ["widths", "NaN or infinity", "Re-initialise"]),
        ("nan_colour_in_place", _nan_colour, (1.0, 1.0, 1.0), ["colors", "NaN or infinity", "Re-initialise"]),
        ("nan_background", None, (float("nan"), 1.0, 1.0), ["background", "finite values in 0..1"]),
        ("nan_grey_background", None, float("nan"), ["background", "finite values in 0..1"]),
        ("inf_background_tensor", None, torch.tensor([1.0, float("inf"), 0.0]), ["background", "finite"]),
        ("background_out_of_range", None, (2.0, 0.0, 0.0), ["background", "0..1"]),
    ],
)
@pytest.mark.parametrize("entry", ["render", "rasterize"])
def test_broken_strokes_or_background_are_refused_at_render(name, mutate, background, parts, entry):
    st = _good()
    if mutate is not None:
        mutate(st)
    t0 = time.perf_counter()
    with pytest.raises(StrokeError) as info:
        if entry == "render":
            render(st, background=background)
        else:
            rasterize(st.points, st.widths, st.colors, 32, 32, background)
    assert time.perf_counter() - t0 < 2
    assert isinstance(info.value, ValueError)  # what the CLI and the nodes already catch
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


@pytest.mark.parametrize(
    "kwargs,part",
    [
        ({"color": (float("nan"), 0, 0)}, "color"),
        ({"width_scale": float("nan")}, "width_scale"),
        ({"size": (100000, 100000)}, "MAX_RENDER_PIXELS"),
        ({"size": (0, 5)}, "positive"),
    ],
)
def test_bad_render_options_are_refused(kwargs, part):
    with pytest.raises(StrokeError, match=part):
        render(_good(), **kwargs)
