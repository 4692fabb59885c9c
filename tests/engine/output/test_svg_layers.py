"""Layered strokes (a scene sketch): every stroke knows its layer through every Strokes operation, the SVG
writes one group per layer and reading it back gives the layers again; plain sketches are untouched."""

import pytest
import torch

from clipasso.output.svg import read_svg, to_svg, write_svg
from clipasso.strokes import StrokeError, Strokes


def _strokes(b=2, s=3, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    return Strokes.from_points(torch.rand(b, s, 4, 2, generator=g) * 60, (64, 80), **extra)


def _layered():
    bg, fg = _strokes(s=3, seed=1, seeds=(0, 1000)), _strokes(s=2, seed=2, seeds=(0, 1000))
    return Strokes.join_layers({"background": bg, "foreground": fg}), bg, fg


def test_join_and_split_layers():
    sk, bg, fg = _layered()
    assert sk.layers == ("background",) * 3 + ("foreground",) * 2
    assert sk.layer_names == ("background", "foreground") and sk.seeds == (0, 1000) and sk.losses is None
    assert torch.equal(sk.layer("background").points, bg.points)
    assert torch.equal(sk.layer("foreground").colors, fg.colors)
    assert sk.layer("foreground").layers == ("foreground",) * 2
    again = Strokes.join_layers([("extra", _strokes(s=1, seed=3, seeds=(0, 1000))), ("whole", sk)])
    assert again.layers == ("extra",) + sk.layers  # a layered part keeps its labels
    assert "layers={background: 3, foreground: 2}" in repr(sk)
    with pytest.raises(StrokeError, match="no layer 'sky'"):
        sk.layer("sky")
    with pytest.raises(StrokeError, match="plain sketch"):
        bg.layer("background")


def test_layers_survive_every_operation():
    sk, _, _ = _layered()
    for other in (
        sk.select(1),
        sk.select([1, 0]),
        sk.to("cpu"),
        sk.cpu(),
        sk.detach(),
        sk.scaled(128, 160),
        sk.replace(losses=torch.tensor([1.0, 2.0])),
        Strokes.concat([sk, sk.select(0)]),
    ):
        assert other.layers == sk.layers
    with pytest.raises(StrokeError, match="same layers"):
        Strokes.concat([sk, sk.replace(layers=None)])
    plain = _strokes()
    assert plain.layers is None and plain.select(0).layers is None and plain.layer_names == ()


def test_bad_layers_are_clear_errors():
    plain = _strokes(s=3)
    with pytest.raises(StrokeError, match="one layer per stroke \\(3\\)"):
        plain.replace(layers=("a", "b"))
    with pytest.raises(StrokeError, match="start with a letter"):
        plain.replace(layers=("a", "b c", "1x"))
    assert plain.replace(layers="sky").layers == ("sky",) * 3  # one name for every stroke
    sk, _, _ = _layered()
    with pytest.raises(StrokeError, match="one layer per stroke"):
        sk.replace(points=sk.points[:, :2], widths=sk.widths[:, :2], colors=sk.colors[:, :2])
    with pytest.raises(StrokeError, match="candidate count"):
        Strokes.join_layers({"a": _strokes(b=1), "b": _strokes(b=2)})
    with pytest.raises(StrokeError, match="at least one"):
        Strokes.join_layers({})


def test_svg_groups_round_trip(tmp_path):
    sk, bg, fg = _layered()
    text = to_svg(sk, 1)
    assert text.count('<g id="background" class="layer" data-layer="background">') == 1
    assert text.count('<g id="foreground" class="layer" data-layer="foreground">') == 1
    assert text.index('id="background"') < text.index('id="foreground"')  # drawn first
    assert '"layers": {"background": 3, "foreground": 2}' in text
    back = read_svg(write_svg(sk, tmp_path / "scene.svg", 1))
    assert back.layers == sk.layers
    assert torch.allclose(back.layer("background").points[0], bg.points[1], atol=1e-4)
    assert torch.allclose(back.layer("foreground").points[0], fg.points[1], atol=1e-4)
    assert torch.allclose(back.widths, sk.widths[1:], atol=1e-4)


def test_plain_sketches_write_no_groups_and_read_no_layers():
    plain = _strokes()
    text = to_svg(plain)
    assert "<g id=" not in text and 'class="layer"' not in text and '"layers"' not in text
    assert text.count("<g ") == 1  # the one styling group, as before layers existed
    assert read_svg(text).layers is None


def test_layer_order_is_kept_when_a_layer_comes_back():
    sk = _strokes(b=1, s=4).replace(layers=("background", "foreground", "background", "foreground"))
    text = to_svg(sk)
    assert 'id="background-2"' in text and 'id="foreground-2"' in text
    back = read_svg(text)
    assert back.layers == sk.layers
    assert torch.allclose(back.points, sk.points, atol=1e-4)


def test_other_editors_layers_are_read():
    svg = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
      viewBox="0 0 100 100" width="100" height="100">
      <g inkscape:groupmode="layer" inkscape:label="Sky and trees" id="layer1">
        <path d="M 1 1 L 50 50" stroke="black" fill="none"/>
        <g id="nested"><path d="M 5 5 L 9 9" stroke="black" fill="none"/></g>
      </g>
      <path d="M 10 90 L 90 90" stroke="black" fill="none"/>
      <g id="plain-group"><path d="M 3 3 L 4 4" stroke="black" fill="none"/></g>
    </svg>"""
    back = read_svg(svg)
    assert back.layers == ("Sky-and-trees", "Sky-and-trees", "other", "other")
