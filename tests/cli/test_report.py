"""`clipasso report`: the PNG grid and Markdown page (trace loss without weights, CLIP loss with a checkpoint)."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("matplotlib")

from clipasso.cli import main  # noqa: E402


@pytest.fixture
def picture(tmp_path):
    img = Image.new("RGBA", (120, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse([20, 15, 100, 85], fill=(40, 40, 40, 255))
    p = tmp_path / "blob.png"
    img.save(p)
    return p


QUALITY = {
    "info": {
        "strokes": 16,
        "seeds": [0, 1000],
        "preset": "fast",
        "iterations": 5,
        "threads": 2,
        "edges": "Canny",
        "tolerance_px": 3,
        "metric_size": 224,
        "cover_radius_px": 8,
        "note": "a note",
    },
    "pictures": {"coffee": {"skipped": "no u2netp"}},
    "rows": [
        {
            "image": "horse",
            "loss": "initial",
            "f": 0.1,
            "f_winner": None,
            "precision": 0.2,
            "recall": 0.05,
            "coverage": 0.3,
            "seconds_per_iteration": None,
        },
        {
            "image": "horse",
            "loss": "trace",
            "f": 0.9,
            "f_winner": 0.95,
            "precision": 0.9,
            "recall": 0.9,
            "coverage": 0.7,
            "seconds_per_iteration": 0.2,
        },
    ],
}


def test_report_without_weights_uses_the_trace_loss(picture, tmp_path, capsys):
    png, md, qj = tmp_path / "g.png", tmp_path / "r.md", tmp_path / "q.json"
    qj.write_text(json.dumps(QUALITY))
    rc = main(
        [
            "report",
            str(picture),
            "-o",
            str(png),
            "--markdown",
            str(md),
            "--quality-json",
            str(qj),
            "--strokes",
            "2",
            "4",
            "--iterations",
            "3",
            "--seeds",
            "2",
            "--device",
            "cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 150
    text = md.read_text()
    assert "![gallery](g.png)" in text and "**trace** loss" in text and "not CLIP" in text
    assert "| blob |" in text and "| horse | trace | 0.900 | 0.950 |" in text and "coffee: no u2netp" in text
    assert "blob, 4 strokes" in err


def test_report_with_a_clip_checkpoint_uses_the_clip_loss(picture, tmp_path, tiny_models, capsys):
    png, md = tmp_path / "g.png", tmp_path / "r.md"
    rc = main(
        [
            "report",
            str(picture),
            "-o",
            str(png),
            "--markdown",
            str(md),
            "--strokes",
            "3",
            "--iterations",
            "2",
            "--seeds",
            "1",
            "--device",
            "cpu",
            "--clip-model",
            tiny_models["rn_name"],
            "--clip-weights",
            tiny_models["rn"],
            "--models-dir",
            tiny_models["folder"],
        ]
    )
    _, err = capsys.readouterr()
    assert rc == 0, err
    text = md.read_text()
    assert "CLIPasso's CLIP loss with clipasso-tiny-rn" in text and "trace" not in text.split("## Gallery")[0]


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.png")]) == 2
    assert "not found" in capsys.readouterr().err
