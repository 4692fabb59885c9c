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
    return [
        "sketch",
        *extra,
        "--models-dir",
        models_dir,
        "--iterations",
        "3",
        "--seeds",
        "1",
        "--no-background-removal",
        "--device",
        "cpu",
        "--offline",
        "--preset",
        "fast",
        "--lr",
        "2",
    ]


def test_auto_strokes_and_drawing_order_outputs(tiny_models_dir, image_file, tmp_path, capsys):
    svg, gif, anim, curve = (tmp_path / n for n in ("out.svg", "draw.gif", "draw.svg", "curve.json"))
    rc = main(
        _args(
            tiny_models_dir,
            str(image_file),
            "-o",
            str(svg),
            "--auto-strokes",
            "0.5",
            "--max-strokes",
            "4",
            "--prune-iterations",
            "1",
            "--gif",
            str(gif),
            "--animated-svg",
            str(anim),
            "--curve",
            str(curve),
        )
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(curve.read_text())
    count = data["abstraction"]["count"]
    assert 1 <= count <= 4
    assert data["abstraction"]["curve"][0]["strokes"] == 4
    assert [c["strokes"] for c in data["abstraction"]["curve"]] == list(
        range(4, 4 - len(data["abstraction"]["curve"]), -1)
    )
    assert sorted(data["drawing_order"]["order"]) == list(range(count))
    assert len(data["drawing_order"]["prefix_losses"]) == count + 1
    assert svg.read_text().count("<path") == count
    assert len(list(ET.parse(anim).getroot().iter("{http://www.w3.org/2000/svg}path"))) == count
    with Image.open(gif) as im:
        assert im.n_frames == count + 1 and im.size == (448, 448)
    assert f"automatic abstraction: {count} of 4 strokes" in out and "drawing order:" in out
    assert "<- chosen" in out
    assert "automatic abstraction: chose" in err  # stage progress on stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--auto-strokes", "1.5"], "--auto-strokes must be a number in (0, 1]"),
        (["--auto-strokes", "0"], "--auto-strokes must be a number in (0, 1]"),
        (["--max-strokes", "8"], "--max-strokes needs --auto-strokes"),
        (["--auto-strokes", "0.9", "--max-strokes", "1"], "--max-strokes must be between 2 and 1024"),
        (["--gif", "out.png"], "--gif must name a .gif file"),
        (["--animated-svg", "no/such/folder/a.svg"], "does not exist"),
        (["--curve", "c.json"], "--curve needs --auto-strokes or --order"),
        (["--abstraction", "grow"], "--abstraction grow needs --auto-strokes FIDELITY"),
        (["--auto-strokes", "0.9", "--start-strokes", "2"], "--start-strokes needs --abstraction grow"),
        (["--auto-strokes", "0.9", "--grow-iterations", "2"], "--grow-iterations needs --abstraction grow"),
        (
            ["--auto-strokes", "0.9", "--abstraction", "prune", "--min-gain", "0.1"],
            "--min-gain needs --abstraction grow",
        ),
        (
            ["--auto-strokes", "0.9", "--abstraction", "grow", "--prune-iterations", "3"],
            "--prune-iterations is for --abstraction prune",
        ),
        (
            ["--auto-strokes", "0.9", "--abstraction", "grow", "--start-strokes", "8", "--max-strokes", "8"],
            "--start-strokes (8) must be below --max-strokes (8)",
        ),
        (
            ["--auto-strokes", "0.9", "--abstraction", "grow", "--start-strokes", "0"],
            "--start-strokes must be at least 1",
        ),
        (["--auto-strokes", "0.9", "--abstraction", "grow", "--grow-iterations", "-1"], "--grow-iterations must be 0"),
        (["--auto-strokes", "0.9", "--abstraction", "grow", "--min-gain", "1"], "--min-gain must be a share in [0, 1)"),
        (["--auto-strokes", "0.9", "--abstraction", "shrink"], "invalid choice: 'shrink'"),
    ],
)
def test_bad_options_are_usage_errors(tiny_models_dir, image_file, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(_args(tiny_models_dir, str(image_file), *extra))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_auto_strokes_by_growing(tiny_models_dir, image_file, tmp_path, capsys):
    """--abstraction grow: start from --start-strokes, add strokes up to --max-strokes; the curve goes up in count.
    Measured with the weights-free trace loss, against which a few strokes clearly beat an empty canvas."""
    svg, curve = tmp_path / "out.svg", tmp_path / "curve.json"
    rc = main(
        _args(
            tiny_models_dir,
            str(image_file),
            "-o",
            str(svg),
            "--loss",
            "trace",
            "--auto-strokes",
            "0.8",
            "--abstraction",
            "grow",
            "--start-strokes",
            "1",
            "--max-strokes",
            "4",
            "--grow-iterations",
            "1",
            "--min-gain",
            "0",
            "--curve",
            str(curve),
        )
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(curve.read_text())["abstraction"]
    assert data["method"] == "grow" and [c["strokes"] for c in data["curve"]] == [1, 2, 3, 4]
    assert data["stop_reason"] == "max_strokes"
    assert svg.read_text().count("<path") == data["count"]
    assert "automatic abstraction (grow): grew from 1 to 4 strokes" in out and "<- chosen" in out
