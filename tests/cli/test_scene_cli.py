"""`clipasso sketch PHOTO --scene` end to end on a real photo (scikit-image's chelsea), in-process, with the
weights-free trace loss and mask saliency; and the scene options' refusals."""

from __future__ import annotations

import pytest

from clipasso.cli import main
from clipasso.output.svg import read_svg

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "chelsea.jpg"
    Image.fromarray(skdata.chelsea()).save(path, quality=92)
    return path


QUICK = ["--preset", "fast", "--iterations", "20", "--seeds", "2", "--strokes", "6", "--device", "cpu", "--offline"]


def test_scene_sketch_writes_layer_groups_and_a_png(photo, tmp_path, capsys):
    svg, png = tmp_path / "scene.svg", tmp_path / "scene.png"
    argv = ["sketch", str(photo), "--scene", "--loss", "trace", "--saliency", "mask", "--background-strokes", "12"]
    rc = main(argv + QUICK + ["--joint-iterations", "5", "-o", str(svg), "--png", str(png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    text = svg.read_text()
    assert '<g id="background" class="layer"' in text and '<g id="foreground" class="layer"' in text
    back = read_svg(svg)
    assert back.layers == ("background",) * 12 + ("foreground",) * 6
    assert png.stat().st_size > 0
    assert "background: 12 strokes, trace loss" in out and "foreground: 6 strokes, trace loss" in out
    assert "joint pass: 5 steps on the whole picture" in out
    assert "45/45" in err  # the progress bar counts both layers' steps and the joint pass


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scene-fidelity", "12"], "--scene-fidelity must be literal, balanced, loose or a ViT-B/32 block number"),
        (["--scene-fidelity", "deep"], "--scene-fidelity must be literal, balanced, loose"),
        (["--background-strokes", "0"], "--background-strokes must be at least 1"),
        (["--joint-iterations", "-1"], "--joint-iterations must be 0 or more"),
    ],
)
def test_bad_scene_options_are_usage_errors(photo, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main(["sketch", str(photo), "--scene", *extra, "-o", str(tmp_path / "x.svg")] + QUICK)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.svg").exists()
