"""The `clipasso sketch` command line, run in-process with tiny real models."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from clipasso.cli import ProgressBar, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def image_file(tmp_path):
    img = Image.new("RGB", (180, 120), "white")
    ImageDraw.Draw(img).polygon([(90, 10), (170, 110), (10, 110)], outline="black", width=5)
    p = tmp_path / "triangle.png"
    img.save(p)
    return p


def _args(models_dir, *extra):
    return ["sketch", *extra, "--models-dir", models_dir, "--iterations", "2", "--strokes", "4", "--seeds", "2",
            "--no-background-removal", "--device", "cpu", "--offline"]


def test_sketch_writes_svg_png_and_summary(tiny_models_dir, image_file, tmp_path, capsys):
    svg, png = tmp_path / "out.svg", tmp_path / "out.png"
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(svg), "--png", str(png)))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert svg.read_text().count("<path") == 4
    with Image.open(png) as im:
        assert im.size == (448, 448)
    assert "winner: seed" in out and "seed 0:" in out and "seed 1000:" in out
    assert "2/2 iterations" in out and "s/iteration" in out
    assert "best loss" in err and "ETA" in err  # progress bar on stderr


def test_no_input_uses_the_bundled_example(tiny_models_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(_args(tiny_models_dir, "-q", "--saliency", "none") + ["--iterations", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "example_sketch.svg").is_file()
    assert "bundled example" in out and err == ""


def test_missing_weights_error_says_where_to_put_them(tmp_path, image_file, capsys):
    rc = main(_args(str(tmp_path), str(image_file), "-o", str(tmp_path / "x.svg")))
    err = capsys.readouterr().err
    assert rc == 1
    assert "no weights for CLIP model 'RN101'" in err and f"into this folder: {tmp_path}" in err
    assert "Traceback" not in err


def test_usage_errors(tmp_path, image_file, capsys):
    assert main(["sketch", str(tmp_path / "missing.png")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["sketch", str(image_file), "-o", str(tmp_path / "out.txt")]) == 2
    assert ".svg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sketch", str(image_file), "--strokes", "0"])
    with pytest.raises(SystemExit):
        main(["sketch", "--preset", "slow"])


def test_progress_bar_lines():
    buf = io.StringIO()
    bar = ProgressBar(100, stream=buf)
    for i in range(1, 101):
        bar.update(i, 1.0 / i)
    lines = buf.getvalue().splitlines()
    assert 5 <= len(lines) <= 12  # not a tty: about one line per 10%
    assert lines[-1].startswith("[" + "#" * 24 + "] 100/100 100%") and "best loss 0.0100" in lines[-1]


def test_module_entry_point_help():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "clipasso", "sketch", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0
    for flag in ("--png", "--strokes", "--seeds", "--iterations", "--preset", "--device", "--clip-model",
                 "--clip-weights", "--saliency-model", "--saliency-weights", "--no-background-removal", "--seed"):
        assert flag in out.stdout


def test_saliency_and_initialisation_flags(tiny_models_dir, image_file, tmp_path, capsys):
    svg = tmp_path / "rel.svg"
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(svg), "-q", "--saliency", "clip-relevancy",
                    "--saliency-text", "a triangle", "--temperature", "0.5", "--no-xdog") + ["--iterations", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert svg.read_text().count("<path") == 4
    # a bad temperature and an unknown matting model are reported, not raised
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(tmp_path / "t.svg"), "-q", "--temperature", "0"))
    err = capsys.readouterr().err
    assert rc != 0 and "temperature" in err and "Traceback" not in err
    args = [a for a in _args(tiny_models_dir, str(image_file), "-o", str(tmp_path / "m.svg"), "-q",
                             "--matting-model", "no-such-model") if a != "--no-background-removal"]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0 and "no-such-model" in err and "Traceback" not in err
