"""SVG writing and reading."""

import json
import math
import xml.etree.ElementTree as ET

import pytest
import torch

from clipasso.render.raster import render
from clipasso.strokes import Strokes
from clipasso.output.svg import SVGError, path_data, read_svg, to_svg, write_svg

NS = "{http://www.w3.org/2000/svg}"


def random_strokes(b=2, s=7, segments=2, canvas=(224, 224), seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = canvas
    pts = torch.rand(b, s, 1 + 3 * segments, 2, generator=g) * torch.tensor([w, h]) * 1.2 - 10
    widths = torch.rand(b, s, generator=g) * 3 + 0.3
    colors = torch.rand(b, s, 4, generator=g)
    return Strokes(
        pts, widths, colors, canvas, losses=torch.rand(b, generator=g), seeds=tuple(range(0, 1000 * b, 1000))
    )


def svg(body, attrs='width="100" height="80"'):
    return f'<svg xmlns="http://www.w3.org/2000/svg" {attrs}>{body}</svg>'


# ------------------------------------------------------------------------------------- writing
def test_written_svg_has_one_round_capped_path_per_stroke():
    s = random_strokes(b=2, s=5, canvas=(200, 300))
    text = to_svg(s, candidate=1)
    root = ET.fromstring(text)
    assert root.get("viewBox") == "0 0 300 200"
    assert (root.get("width"), root.get("height")) == ("300", "200")
    paths = root.findall(f".//{NS}path")
    assert len(paths) == 5
    g = root.find(f"{NS}g")
    assert g.get("fill") == "none" and g.get("stroke-linecap") == "round" and g.get("stroke-linejoin") == "round"
    for i, p in enumerate(paths):
        d = p.get("d")
        assert d.startswith("M ") and d.count("C") == 2
        assert float(p.get("stroke-width")) == pytest.approx(2 * float(s.widths[1, i]), abs=1e-4)
        assert float(p.get("stroke-opacity")) == pytest.approx(float(s.colors[1, i, 3]), abs=1e-4)
    info = json.loads(root.find(f"{NS}metadata").text)
    assert info["seed"] == 1000 and info["strokes"] == 5 and info["loss"] == pytest.approx(float(s.losses[1]))


def test_path_data_is_plain_moveto_and_curveto():
    pts = torch.tensor([[0.0, 1.5], [2, 3], [4, 5.25], [6, 7], [8, 9], [10, 11], [12.123456, -0.00001]])
    assert path_data(pts) == "M 0 1.5 C 2 3 4 5.25 6 7 C 8 9 10 11 12.1235 0"


def test_round_trip_reproduces_points_widths_and_colours():
    s = random_strokes(b=3, s=9, segments=3, canvas=(224, 320))
    for c in range(3):
        back = read_svg(to_svg(s, candidate=c))
        assert back.canvas == s.canvas and back.points.shape == (1, 9, 10, 2)
        assert float((back.points[0] - s.points[c]).abs().max()) < 1e-3
        assert float((back.widths[0] - s.widths[c]).abs().max()) < 1e-3
        assert float((back.colors[0, :, 3] - s.colors[c, :, 3]).abs().max()) < 1e-3
        assert float((back.colors[0, :, :3] - s.colors[c, :, :3]).abs().max()) <= 0.5 / 255 + 1e-6


def test_write_svg_to_file_and_read_the_file(tmp_path):
    s = random_strokes(b=1, s=4)
    out = write_svg(s, tmp_path / "sub" / "sketch.svg", background=(1, 1, 1), size=(448, 448))
    back = read_svg(out)  # the background rectangle is recognised and skipped
    assert back.num_strokes == 4 and back.canvas == (224, 224)
    root = ET.parse(out).getroot()
    assert root.get("width") == "448" and root.find(f"{NS}rect").get("class") == "background"
    # rendering the read-back strokes gives the same picture
    torch.testing.assert_close(render(back).image, render(s).image, atol=2e-3, rtol=0)


def test_pen_width_overrides_every_stroke():
    s = random_strokes(b=1, s=3)
    back = read_svg(to_svg(s, pen_width=2.0))
    torch.testing.assert_close(back.widths, torch.full((1, 3), 1.0))


def test_write_errors_are_clear(tmp_path):
    s = random_strokes(b=1)
    with pytest.raises(SVGError, match="Strokes"):
        to_svg(torch.zeros(1, 1, 4, 2))
    with pytest.raises(SVGError, match="pen_width"):
        to_svg(s, pen_width=0)
    with pytest.raises(SVGError, match="size"):
        to_svg(s, size=(0, 5))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SVGError, match="cannot write"):
        write_svg(s, blocker / "a.svg")


# ------------------------------------------------------------------------------------- reading others' SVG
def test_reads_every_path_command_absolute_and_relative():
    # the same open shape twice: absolute commands, then relative ones
    absolute = "M 10 10 L 20 10 H 30 V 20 C 30 25 35 30 40 30 S 50 40 50 30 Q 55 20 60 30 T 70 30"
    relative = "m 10 10 l 10 0 h 10 v 10 c 0 5 5 10 10 10 s 10 10 10 0 q 5 -10 10 0 t 10 0"
    a = read_svg(svg(f'<path d="{absolute}" stroke="black"/>'))
    r = read_svg(svg(f'<path d="{relative}" stroke="black"/>'))
    torch.testing.assert_close(a.points, r.points, atol=1e-5, rtol=0)
    pts = a.points[0, 0]
    assert pts.shape == (1 + 3 * 7, 2)
    # line pieces become straight cubics at thirds; S reflects the previous control point
    torch.testing.assert_close(
        pts[:4], torch.tensor([[10, 10], [13.3333, 10], [16.6667, 10], [20, 10.0]]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(pts[13], torch.tensor([45.0, 30.0]))  # reflection of (35,30) about (40,30)
    # Q -> cubic: control points at 2/3 towards the quadratic control point
    torch.testing.assert_close(pts[16], torch.tensor([50 + 2 / 3 * 5, 30 - 2 / 3 * 10]), atol=1e-4, rtol=0)
    # T reflects the quadratic control (55,20) about (60,30) -> (65,40)
    torch.testing.assert_close(pts[19], torch.tensor([60 + 2 / 3 * 5, 30 + 2 / 3 * 10]), atol=1e-4, rtol=0)


def test_compact_number_syntax_and_implicit_linetos():
    s = read_svg(svg('<path d="M1.5.5-2e1,3 4-5z" stroke="#000"/>'))
    pts = s.points[0, 0]
    # M 1.5 0.5, implicit L -20 3, L 4 -5, Z back to the start: 3 segments
    assert pts.shape == (10, 2)
    torch.testing.assert_close(pts[3], torch.tensor([-20.0, 3.0]))
    torch.testing.assert_close(pts[6], torch.tensor([4.0, -5.0]))
    torch.testing.assert_close(pts[9], torch.tensor([1.5, 0.5]))


def test_subpaths_become_strokes_padded_to_equal_length():
    s = read_svg(svg('<path d="M0 0 C 1 1 2 2 3 3 C 4 4 5 5 6 6 M 10 10 L 20 20" stroke="red" stroke-width="4"/>'))
    assert s.num_strokes == 2 and s.num_segments == 2
    second = s.points[0, 1]
    torch.testing.assert_close(second[4:], torch.tensor([[20.0, 20.0]] * 3))  # zero-length padding
    torch.testing.assert_close(s.widths, torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(s.colors[0, 0], torch.tensor([1.0, 0, 0, 1]))


def test_group_transforms_styles_and_inheritance():
    body = (
        '<g transform="translate(10,20) scale(2)" stroke="rgb(0, 128, 255)" stroke-width="3" opacity="0.5">'
        '<g transform="rotate(90)"><path d="M 0 0 L 5 0" style="stroke-opacity:0.5"/></g>'
        '<line x1="1" y1="1" x2="2" y2="1" transform="matrix(1 0 0 1 3 4)"/>'
        '<polyline points="0,0 1,0 1,1" transform="skewX(45)"/>'
        "</g>"
    )
    s = read_svg(svg(body))
    p = s.points[0]
    torch.testing.assert_close(p[0, 0], torch.tensor([10.0, 20.0]))
    torch.testing.assert_close(p[0, 3], torch.tensor([10.0, 30.0]), atol=1e-5, rtol=0)  # (5,0) rotated, x2, moved
    torch.testing.assert_close(p[1, 0], torch.tensor([18.0, 30.0]))
    torch.testing.assert_close(p[2, 6], torch.tensor([10.0 + 2 * 2, 20.0 + 2]), atol=1e-5, rtol=0)  # skew then scale
    torch.testing.assert_close(s.widths[0], torch.tensor([3.0, 3.0, 3.0]))  # 3 px, scaled x2, halved
    torch.testing.assert_close(s.colors[0, 0], torch.tensor([0, 128 / 255, 1.0, 0.25]))
    torch.testing.assert_close(s.colors[0, 1, 3], torch.tensor(0.5))


def test_viewbox_offset_sets_canvas_and_origin():
    s = read_svg(svg('<path d="M 60 60 L 70 70" stroke="black"/>', 'viewBox="50 40 200 100" width="400" height="200"'))
    assert s.canvas == (100, 200)
    torch.testing.assert_close(s.points[0, 0, 0], torch.tensor([10.0, 20.0]))


def test_circles_polygons_and_skipped_elements():
    body = (
        '<title>t</title><desc>d</desc><metadata>{"x": 1}</metadata><defs><path d="M0 0 L 1 1"/></defs>'
        '<circle cx="50" cy="40" r="10" stroke="black" fill="none"/>'
        '<polygon points="0,0 10,0 10,10" stroke="black"/>'
        '<path d="M 0 0 L 9 9" fill="black"/>'  # fill only: no stroke, skipped
        '<path d="M 0 0 L 9 9" stroke="black" display="none"/>'
    )
    s = read_svg(svg(body))
    assert s.num_strokes == 2
    circle = s.points[0, 0]
    radii = (circle - torch.tensor([50.0, 40.0])).norm(dim=-1)[0::3]
    torch.testing.assert_close(radii, torch.full((5,), 10.0))
    torch.testing.assert_close(s.points[0, 1, 9], torch.tensor([0.0, 0.0]))  # polygon closes


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty"),
        ("<svg", "not well-formed"),
        ("<html></html>", "root element is <html>"),
        (svg('<path d="M 0 0 A 5 5 0 0 1 10 10" stroke="black"/>'), "arc"),
        (svg('<text x="0" y="10" stroke="black">hi</text>'), "<text>"),
        (svg('<image href="a.png"/>'), "<image>"),
        (svg('<path d="M 0 0 L 5" stroke="black"/>'), "needs 2 numbers"),
        (svg('<path d="L 0 0 5 5" stroke="black"/>'), "start with M"),
        (svg('<path d="M 0 0 L 5 5 #" stroke="black"/>'), "unexpected character"),
        (svg('<path d="M 0 0 L 5 5" stroke="black" transform="perspective(3)"/>'), "unsupported transform"),
        (svg('<path d="M 0 0 L 5 5" stroke="url(#grad)"/>'), "gradient"),
        (svg('<path d="M 0 0 L 5 5" stroke="blurple"/>'), "unknown colour"),
        (svg('<path d="M 0 0 L 5 5" stroke="black" stroke-width="2em"/>'), "stroke-width"),
        (svg('<path d="M 0 0 L 5 5" fill="black"/>'), "no stroked paths"),
        ('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L 5 5" stroke="black"/></svg>', "canvas size"),
        (svg("", 'viewBox="0 0 -1 5"'), "viewBox"),
    ],
)
def test_malformed_or_unsupported_svg_gives_clear_errors(text, match):
    with pytest.raises(SVGError, match=match):
        read_svg(text)


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(SVGError, match="not found"):
        read_svg(tmp_path / "nope.svg")
    with pytest.raises(SVGError, match="text, bytes or a file path"):
        read_svg(42)
    broken = tmp_path / "broken.svg"
    broken.write_text(to_svg(random_strokes(b=1))[:-40])  # truncated file
    with pytest.raises(SVGError, match="broken or truncated"):
        read_svg(broken)


def test_width_override_and_bytes_input():
    s = read_svg(svg('<path d="M 0 0 L 5 5" stroke="black" stroke-width="9"/>').encode(), width=1.5)
    assert float(s.widths[0, 0]) == 1.5
    with pytest.raises(SVGError, match="width"):
        read_svg(svg('<path d="M 0 0 L 5 5" stroke="black"/>'), width=-1)
    assert math.isclose(float(read_svg(svg('<path d="M0 0L5 5" stroke="#000"/>')).widths[0, 0]), 0.5)


# ------------------------------------------------------------------------------------- long paths are split
def test_a_path_longer_than_the_stroke_bound_becomes_consecutive_strokes_sharing_end_points():
    from clipasso.output.svg import STROKE_SEGMENTS

    n = 2 * STROKE_SEGMENTS + 44
    d = "M0 0" + "".join(f" L{i + 1} {(i * 7) % 13}" for i in range(n))
    s = read_svg(svg(f'<path d="{d}" stroke="black"/><path d="M 0 0 L 5 5" stroke="red"/>', 'width="320" height="20"'))
    assert s.num_strokes == 4 and s.num_segments == STROKE_SEGMENTS
    p = s.points[0]
    torch.testing.assert_close(p[0, -1], p[1, 0])  # consecutive pieces share their end points
    torch.testing.assert_close(p[1, -1], p[2, 0])
    torch.testing.assert_close(p[2, 3 * 44], torch.tensor([float(n), float(((n - 1) * 7) % 13)]))
    torch.testing.assert_close(p[2, 3 * 44 :], p[2, 3 * 44].expand(3 * (STROKE_SEGMENTS - 44) + 1, 2))  # padding
    torch.testing.assert_close(s.colors[0, 3], torch.tensor([1.0, 0, 0, 1]))
    # the split drawing renders as one unsplit stroke of the same points does
    one = Strokes(
        torch.cat([p[0], p[1, 1:], p[2, 1 : 3 * 44 + 1]])[None, None], s.widths[:, :1], s.colors[:, :1], s.canvas
    )
    first3 = s.replace(points=p[None, :3], widths=s.widths[:, :3], colors=s.colors[:, :3])
    diff = (render(first3).alpha - render(one).alpha).abs()[0]
    ys, xs = torch.meshgrid(torch.arange(20) + 0.5, torch.arange(320) + 0.5, indexing="ij")
    near = torch.zeros_like(diff, dtype=torch.bool)
    for joint in (p[0, -1], p[1, -1]):  # only where both pieces of a split reach (the joins) may differ
        near |= (xs - joint[0]).abs() < 2.0
    assert float(diff[~near].max()) < 1e-5 and bool((diff[near] < 0.5).all())


def test_sketch_at_the_stroke_bound_reads_back_stroke_for_stroke():
    from clipasso.output.svg import STROKE_SEGMENTS

    s = random_strokes(b=1, s=3, segments=STROKE_SEGMENTS, canvas=(64, 64))
    back = read_svg(to_svg(s))
    assert back.points.shape == s.points.shape
    assert float((back.points - s.points).abs().max()) <= 1e-4 + 1e-5


@pytest.mark.parametrize(
    "name,value",
    [
        ("MAX_SVG_BYTES", 8 * 1024 * 1024),
        ("MAX_SVG_ELEMENTS", 20_000),
        ("MAX_PATH_SEGMENTS", 25_000),
        ("MAX_TOTAL_SEGMENTS", 100_000),
        ("MAX_STROKES", 20_000),
        ("STROKE_SEGMENTS", 128),
        ("MAX_CANVAS_SIDE", 4096),
    ],
)
def test_limits_are_documented_module_constants(name, value):
    import clipasso.output.svg as mod

    assert getattr(mod, name) == value
    assert f"`{name}`" in mod.read_svg.__doc__ or name == "STROKE_SEGMENTS"


def test_a_limit_can_be_raised_by_the_caller(monkeypatch):
    import clipasso.output.svg as mod

    d = "M0 0" + " l1 1" * 30
    monkeypatch.setattr(mod, "MAX_PATH_SEGMENTS", 20)
    with pytest.raises(SVGError, match="more than 20 cubic segments"):
        read_svg(svg(f'<path d="{d}" stroke="black"/>'))
    monkeypatch.setattr(mod, "MAX_PATH_SEGMENTS", 40)
    assert read_svg(svg(f'<path d="{d}" stroke="black"/>')).num_segments == 30
