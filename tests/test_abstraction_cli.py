"""`clipasso sketch --auto-strokes/--order/--gif/--animated-svg/--curve`, in-process with tiny real models."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from PIL import Image, ImageDraw

from clipasso.cli import main


@pytest.fixture
def image_file(tmp_path):
    img = Image.new("RGB", (120, 120), "white")
    ImageDraw.Draw(img).polygon([(60, 10), (110, 110), (10, 110)], outline="black", width=5)
    p = tmp_path / "triangle.png"
    img.save(p)
    return p


def _args(models_dir, *extra):
    return ["sketch", *extra, "--models-dir", models_dir, "--iterations", "3", "--seeds", "1",
            "--no-background-removal", "--device", "cpu", "--offline", "--preset", "fast", "--lr", "2"]


def test_auto_strokes_and_drawing_order_outputs(tiny_models_dir, image_file, tmp_path, capsys):
    svg, gif, anim, curve = (tmp_path / n for n in ("out.svg", "draw.gif", "draw.svg", "curve.json"))
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(svg), "--auto-strokes", "0.5", "--max-strokes", "4",
                    "--prune-iterations", "1", "--gif", str(gif), "--animated-svg", str(anim),
                    "--curve", str(curve)))
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(curve.read_text())
    count = data["abstraction"]["count"]
    assert 1 <= count <= 4
    assert data["abstraction"]["curve"][0]["strokes"] == 4
    assert [c["strokes"] for c in data["abstraction"]["curve"]] == list(range(4, 4 - len(data["abstraction"]["curve"]), -1))
    assert sorted(data["drawing_order"]["order"]) == list(range(count))
    assert len(data["drawing_order"]["prefix_losses"]) == count + 1
    assert svg.read_text().count("<path") == count
    assert len(list(ET.parse(anim).getroot().iter("{http://www.w3.org/2000/svg}path"))) == count
    with Image.open(gif) as im:
        assert im.n_frames == count + 1 and im.size == (448, 448)
    assert f"automatic abstraction: {count} of 4 strokes" in out and "drawing order:" in out
    assert "<- chosen" in out
    assert "automatic abstraction: chose" in err  # stage progress on stderr


@pytest.mark.parametrize("extra, message", [
    (["--auto-strokes", "1.5"], "--auto-strokes must be a fidelity in (0, 1]"),
    (["--auto-strokes", "0"], "--auto-strokes must be a fidelity in (0, 1]"),
    (["--max-strokes", "8"], "--max-strokes needs --auto-strokes"),
    (["--auto-strokes", "0.9", "--max-strokes", "1"], "--max-strokes must be at least 2"),
    (["--gif", "out.png"], "--gif must name a .gif file"),
    (["--animated-svg", "no/such/folder/a.svg"], "does not exist"),
    (["--curve", "c.json"], "--curve needs --auto-strokes or --order"),
])
def test_bad_options_are_usage_errors(tiny_models_dir, image_file, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(_args(tiny_models_dir, str(image_file), *extra))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
