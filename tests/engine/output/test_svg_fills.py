"""Filled shapes read as outline strokes (`read_svg(..., fills="outline")`): what tracers write becomes a
starting sketch. Checked on real vtracer output of scikit-image's horse and astronaut."""

import io
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipasso.output import svg as svgmod
from clipasso.output.outline import area, fit_closed, flatten
from clipasso.render.raster import render
from clipasso.output.svg import SVGError, read_svg, to_svg
from clipasso.strokes import Strokes

vtracer = pytest.importorskip("vtracer")
skdata = pytest.importorskip("skimage.data")
from skimage import color, feature  # noqa: E402  (after the skip: scikit-image is in the test extra)


def svg(body, attrs='width="100" height="80"'):
    return f'<svg xmlns="http://www.w3.org/2000/svg" {attrs}>{body}</svg>'


def traced(picture: np.ndarray, size, **options):
    """vtracer's SVG of `picture` resized to `size` (w, h), and the resized picture it traced."""
    from PIL import Image

    img = Image.fromarray(picture).convert("RGB").resize(size)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return vtracer.convert_raw_image_to_svg(buf.getvalue(), img_format="png", **options), np.asarray(img)


@pytest.fixture(scope="module")
def horse():
    return traced(skdata.horse().astype(np.uint8) * 255, (120, 100))


@pytest.fixture(scope="module")
def astronaut():
    return traced(skdata.astronaut(), (96, 96))


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.max_pool2d(t, 2 * radius + 1, 1, radius)[0, 0].numpy() > 0


def on_edges(ink: np.ndarray, edges: np.ndarray, radius: int) -> float:
    """Share of the ink within `radius` px of an edge."""
    return float((ink & near(edges, radius)).sum() / max(ink.sum(), 1))


def ink_of(strokes) -> np.ndarray:
    return render(strokes.cpu(), background=(1, 1, 1)).alpha[0].numpy() > 0.5


def curve_extent(strokes):
    polys = [flatten(strokes.points[0, s].tolist()) for s in range(strokes.num_strokes)]
    allp = np.concatenate(polys)
    return allp.min(0), allp.max(0)


# ------------------------------------------------------------------------------------- real tracer output
def test_vtracer_output_is_refused_by_default_with_a_message_naming_the_option(horse, astronaut):
    for text, _ in (horse, astronaut):
        with pytest.raises(SVGError, match="no stroked paths") as err:
            read_svg(text)
        assert "fills='outline'" in str(err.value) and "fill_shapes" in str(err.value)


def test_traced_horse_becomes_outline_strokes_on_its_edges(horse):
    text, picture = horse
    s = read_svg(text, fills="outline")
    assert s.canvas == (100, 120) and s.num_segments == svgmod.OUTLINE_SEGMENTS
    assert 1 <= s.num_strokes <= text.count("<path") - 1  # the canvas-sized background is not an outline
    lo, hi = curve_extent(s)
    assert (lo >= -1.5).all() and hi[0] <= 121.5 and hi[1] <= 101.5  # the drawn curves stay on the canvas
    ink = ink_of(s)
    edges = feature.canny(color.rgb2gray(picture), sigma=1.0)
    assert on_edges(ink, edges, 1) > 0.8  # the outline runs along the silhouette's edges
    assert float((edges & near(ink, 2)).sum() / edges.sum()) > 0.9  # and covers them
    # the same check fails for the same strokes moved off the shape: it measures the alignment
    assert on_edges(np.roll(ink, (9, 9), (0, 1)), edges, 1) < 0.4
    # every outline is closed
    torch.testing.assert_close(s.points[0, :, 0], s.points[0, :, -1])


def test_traced_astronaut_is_capped_to_the_largest_outlines(astronaut, caplog):
    text, picture = astronaut
    everything = read_svg(text, fills="outline")
    with caplog.at_level(logging.INFO, logger="clipasso.output.svg"):
        s = read_svg(text, fills="outline", max_outlines=24, outline_color="black")
    assert s.num_strokes == 24 < everything.num_strokes
    assert f"{everything.num_strokes - 24} smaller outlines over the cap of 24" in caplog.text
    assert torch.all(s.colors[0] == torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # the kept outlines are the largest ones of the uncapped read, in the same (document) order
    areas = [area(flatten(everything.points[0, i].tolist())) for i in range(everything.num_strokes)]
    kept = [
        next(i for i in range(everything.num_strokes) if torch.allclose(everything.points[0, i], s.points[0, j]))
        for j in range(24)
    ]
    assert kept == sorted(kept)
    dropped = [a for i, a in enumerate(areas) if i not in kept]
    assert min(areas[i] for i in kept) >= 0.9 * max(dropped)
    lo, hi = curve_extent(s)
    assert (lo >= -1.5).all() and (hi <= 97.5).all()
    ink = ink_of(s)
    edges = feature.canny(color.rgb2gray(picture), sigma=1.0)
    aligned = on_edges(ink, edges, 1)
    assert aligned > 0.7 and aligned > on_edges(np.roll(ink, (9, 9), (0, 1)), edges, 1) + 0.12


def test_outlines_can_be_refined_as_a_sketch(horse):
    """What Optimize Sketch needs of a start: one P for all strokes, gradients through the rasterizer."""
    text, _ = horse
    s = read_svg(text, fills="outline", segments=4)
    assert s.points.shape[-2] == 1 + 3 * 4
    pts = s.points.clone().requires_grad_(True)
    out = render(Strokes(pts, s.widths, s.colors, s.canvas), background=(1, 1, 1))
    out.image.mean().backward()
    assert pts.grad is not None and bool(pts.grad.abs().sum() > 0)


# ------------------------------------------------------------------------------------- the rules
SQUARE = "M 20 20 L 60 20 L 60 60 L 20 60 Z"


def test_each_closed_subpath_becomes_an_outline_holes_included():
    body = f'<path d="{SQUARE} M 30 30 L 50 30 L 50 50 L 30 50 Z" fill="#ff0000" fill-opacity="0.5"/>'
    s = read_svg(svg(body), fills="outline", segments=4)
    assert s.num_strokes == 2 and s.num_segments == 4
    torch.testing.assert_close(s.colors[0], torch.tensor([[1.0, 0.0, 0.0, 0.5]] * 2))
    torch.testing.assert_close(s.widths[0], torch.full((2,), 1.5))
    for k, (lo, hi) in enumerate(((20, 60), (30, 50))):
        poly = flatten(s.points[0, k].tolist())
        assert poly.min() >= lo - 1.0 and poly.max() <= hi + 1.0
        assert abs(area(poly) - (hi - lo) ** 2) < 0.08 * (hi - lo) ** 2  # 4 cubics round the corners a little


def test_stroked_shapes_keep_their_stroke_and_own_sketches_read_as_before():
    body = (
        f'<path d="{SQUARE}" fill="black" stroke="blue" stroke-width="4"/>'
        '<line x1="0" y1="0" x2="50" y2="50"/>'  # a line has no inside: nothing to outline
        '<polyline points="70,10 90,10 90,30" fill="none"/>'
    )  # neither filled nor stroked
    s = read_svg(svg(body), fills="outline")
    assert s.num_strokes == 1 and s.num_segments == 4  # the stroke as written, not an outline
    torch.testing.assert_close(s.widths[0], torch.tensor([2.0]))
    g = torch.Generator().manual_seed(3)
    ours = Strokes(
        torch.rand(1, 5, 7, 2, generator=g) * 80, torch.full((1, 5), 1.5), torch.rand(1, 5, 4, generator=g), (80, 80)
    )
    text = to_svg(ours, background=(1, 1, 1))
    a, b = read_svg(text), read_svg(text, fills="outline")
    assert torch.equal(a.points, b.points) and torch.equal(a.colors, b.colors) and torch.equal(a.widths, b.widths)


def test_specks_and_the_background_are_dropped_and_rects_are_outlined(caplog):
    body = (
        '<rect x="0" y="0" width="100" height="80" fill="white"/>'  # background
        '<path d="M 5 5 L 7 5 L 7 7 Z" fill="black"/>'  # 2 px²: under 0.05 % of 8000 px²
        '<rect x="10" y="10" width="30" height="20" rx="4" fill="green"/>'
        '<circle cx="70" cy="40" r="8" fill="navy" transform="translate(5 0)"/>'
    )
    with caplog.at_level(logging.INFO, logger="clipasso.output.svg"):
        s = read_svg(svg(body), fills="outline", width=0.75)
    assert s.num_strokes == 2 and "1 specks" in caplog.text and "1 canvas-sized background" in caplog.text
    torch.testing.assert_close(s.widths[0], torch.full((2,), 0.75))
    rect, circle = (flatten(s.points[0, k].tolist()) for k in range(2))
    assert rect[:, 0].min() > 9 and rect[:, 0].max() < 41 and abs(area(rect) - (600 - (4 - np.pi) * 16)) < 30
    centre = circle[:-1].mean(0)
    assert np.allclose(centre, (75, 40), atol=0.5)
    assert np.allclose(np.linalg.norm(circle - centre, axis=1), 8, atol=0.3)
    torch.testing.assert_close(s.colors[0, 1], torch.tensor([0.0, 0.0, 128 / 255, 1.0]))
    # stroked rectangles are still not read (convert them to paths), as without the option
    with pytest.raises(SVGError, match="<rect>"):
        read_svg(svg('<rect width="5" height="5" stroke="black"/>'), fills="outline")


def test_nothing_left_to_outline_says_why():
    with pytest.raises(SVGError, match="no filled shape to outline.*1 enclose less.*1 cover the whole canvas"):
        read_svg(svg('<path d="M 0 0 H 100 V 80 H 0 Z"/><path d="M 5 5 h 2 v 2 Z"/>'), fills="outline")


def test_fit_follows_a_circle_closely():
    t = np.linspace(0, 2 * np.pi, 400)
    poly = np.stack([50 + 20 * np.cos(t), 40 + 20 * np.sin(t)], 1)
    pts = fit_closed(poly, 8)
    assert len(pts) == 25 and pts[0] == pts[-1]
    back = flatten(pts)
    assert np.abs(np.linalg.norm(back - (50, 40), axis=1) - 20).max() < 0.1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fills="trace"), "fills must be one of ignore, outline"),
        (dict(fills="outline", segments=0), "segments must be"),
        (dict(fills="outline", segments=2.5), "segments must be"),
        (dict(fills="outline", max_outlines=0), "max_outlines must be"),
        (dict(fills="outline", outline_color="none"), "draws nothing"),
        (dict(fills="outline", outline_color=(2, 0, 0)), "outline_color must be"),
        (dict(fills="outline", outline_color="blurple"), "unknown colour"),
    ],
)
def test_bad_options_are_refused_clearly(kwargs, match):
    with pytest.raises(SVGError, match=match):
        read_svg(svg(f'<path d="{SQUARE}"/>'), **kwargs)


def test_a_gradient_fill_needs_an_outline_colour():
    text = svg(f'<path d="{SQUARE}" fill="url(#g)"/>')
    with pytest.raises(SVGError, match="outline_color='black'"):
        read_svg(text, fills="outline")
    assert read_svg(text, fills="outline", outline_color="black").num_strokes == 1


def test_the_reader_limits_still_hold(monkeypatch):
    body = "".join(f'<path d="M {x} 10 h 8 v 8 h -8 Z"/>' for x in range(0, 90, 10))
    monkeypatch.setattr(svgmod, "MAX_STROKES", 4)
    s = read_svg(svg(body), fills="outline")
    assert s.num_strokes == 4  # capped at the reader's limit, largest (here: all equal) first
    monkeypatch.setattr(svgmod, "MAX_TOTAL_SEGMENTS", 20)
    with pytest.raises(SVGError, match="MAX_TOTAL_SEGMENTS"):
        read_svg(svg(body), fills="outline")
