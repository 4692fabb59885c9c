"""The `clipasso sketch` command line, run in-process with tiny real models."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from clipasso.cli import ProgressBar, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def image_file(tmp_path):
    img = Image.new("RGB", (180, 120), "white")
    ImageDraw.Draw(img).polygon([(90, 10), (170, 110), (10, 110)], outline="black", width=5)
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
        "2",
        "--strokes",
        "4",
        "--seeds",
        "2",
        "--no-background-removal",
        "--device",
        "cpu",
        "--offline",
    ]


def test_sketch_writes_svg_png_and_summary(tiny_models_dir, image_file, tmp_path, capsys):
    svg, png = tmp_path / "out.svg", tmp_path / "out.png"
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(svg), "--png", str(png)))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert svg.read_text().count("<path") == 4
    with Image.open(png) as im:  # paper frames as the original (stretch); the sketch comes back 180:120
        assert im.size == (448, 298)
    assert 'viewBox="0 0 224 149"' in svg.read_text()
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
    assert f"clipasso: error: Put RN101.pt (CLIP RN101, openai weights) into {tmp_path}" in err
    assert "No usable weights for CLIP model 'RN101'" in err
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
    out = subprocess.run(
        [sys.executable, "-m", "clipasso", "sketch", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0
    for flag in (
        "--png",
        "--strokes",
        "--seeds",
        "--iterations",
        "--preset",
        "--device",
        "--clip-model",
        "--clip-weights",
        "--saliency-model",
        "--saliency-weights",
        "--no-background-removal",
        "--seed",
    ):
        assert flag in out.stdout


def test_saliency_and_initialisation_flags(tiny_models_dir, image_file, tmp_path, capsys):
    svg = tmp_path / "rel.svg"
    rc = main(
        _args(
            tiny_models_dir,
            str(image_file),
            "-o",
            str(svg),
            "-q",
            "--saliency",
            "clip-relevancy",
            "--saliency-text",
            "a triangle",
            "--temperature",
            "0.5",
            "--no-xdog",
        )
        + ["--iterations", "1"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert svg.read_text().count("<path") == 4
    # a bad temperature is an option error, found before any work; an unknown matting model is reported
    with pytest.raises(SystemExit) as exited:
        main(_args(tiny_models_dir, str(image_file), "-o", str(tmp_path / "t.svg"), "-q", "--temperature", "0"))
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "--temperature must be above 0" in err and "Traceback" not in err
    args = [
        a
        for a in _args(
            tiny_models_dir, str(image_file), "-o", str(tmp_path / "m.svg"), "-q", "--matting-model", "no-such-model"
        )
        if a != "--no-background-removal"
    ]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0 and "no-such-model" in err and "Traceback" not in err


def test_framing_flag(tiny_models_dir, image_file, tmp_path, capsys):
    """--framing pad keeps the padded square; stretch maps the sketch back to the picture's 3:2 shape."""
    sizes = {}
    for framing in ("pad", "fix-scale", "stretch"):
        svg, png = tmp_path / f"{framing}.svg", tmp_path / f"{framing}.png"
        rc = main(
            _args(
                tiny_models_dir,
                str(image_file),
                "-q",
                "-o",
                str(svg),
                "--png",
                str(png),
                "--framing",
                framing,
                "--saliency",
                "none",
                "--png-size",
                "300",
            )
        )
        assert rc == 0, capsys.readouterr().err
        with Image.open(png) as im:
            sizes[framing] = im.size
    assert sizes == {"pad": (300, 300), "fix-scale": (300, 300), "stretch": (300, 200)}
    with pytest.raises(SystemExit):
        main(_args(tiny_models_dir, str(image_file), "--framing", "crop"))
    assert "invalid choice: 'crop'" in capsys.readouterr().err


def test_matting_model_choices_include_the_full_u2net(tmp_path, image_file, capsys, monkeypatch):
    """u2net (the original's network) is offered; missing on disk and offline, the error says where it goes."""
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "rembg-home"))
    monkeypatch.delenv("CLIPASSO_MODELS_DIR", raising=False)
    rc = main(
        [
            "sketch",
            str(image_file),
            "-o",
            str(tmp_path / "x.svg"),
            "--matting-model",
            "u2net",
            "--offline",
            "--loss",
            "trace",
            "--saliency",
            "none",
            "--iterations",
            "1",
            "--device",
            "cpu",
            "-q",
            "--models-dir",
            str(tmp_path / "a"),
            "--models-dir",
            str(tmp_path / "b"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "u2net.onnx" in err and str(tmp_path / "a") in err and str(tmp_path / "b") in err
    assert "--no-background-removal" in err and "Traceback" not in err
    from clipasso.cli import build_parser

    sk = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["sketch"]._actions
        if "--matting-model" in a.option_strings
    )
    assert "u2net (the full U2-Net the original used" in sk.help and "as the paper" not in sk.help


def test_compile_says_what_it_does_and_the_summary_says_what_it_decided(tiny_models_dir, image_file, tmp_path, capsys):
    # on: the step is compiled (a real inductor compile, in the session's compile cache), and said so
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(tmp_path / "on.svg"), "--compile", "on"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "clipasso: compile:" in err and ("compiling the encoder once" in err or "from this machine's cache" in err)
    assert "compile on: compiled: asked (compile on)" in out
    # off: nothing is compiled and nothing said
    rc = main(_args(tiny_models_dir, str(image_file), "-o", str(tmp_path / "off.svg"), "--compile", "off"))
    out, err = capsys.readouterr()
    assert rc == 0 and "clipasso: compile" not in err and "  compile " not in out
