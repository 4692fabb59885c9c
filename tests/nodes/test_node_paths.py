"""Nodes keep to ComfyUI's folders: the containment helper of nodes/common.py and every node that takes a
file or folder name (Batch (folder), Load SVG, Save SVG, Load CLIPasso Models' tag), inside the real
ComfyUI 0.3.75 core's folder_paths (fetched by the e2e harness; no stubs)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import torch

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack

ENV = "CLIPASSO_ALLOW_ANY_PATH"


@pytest.fixture(scope="session")
def core():
    return import_core(comfyui_or_skip())


@pytest.fixture
def dirs(core, tmp_path, monkeypatch):
    """Fresh input/output/temp folders for one test (the previous ones come back afterwards), a folder
    outside them holding a picture and an SVG, and the opt-in switched off."""
    from PIL import Image

    old = (core.get_input_directory(), core.get_output_directory(), core.get_temp_directory())
    d = {k: tmp_path / k for k in ("input", "output", "temp", "outside", "input2")}
    for p in d.values():
        p.mkdir()
    core.set_input_directory(str(d["input"]))
    core.set_output_directory(str(d["output"]))
    core.set_temp_directory(str(d["temp"]))
    Image.new("RGB", (48, 48), "white").save(d["outside"] / "secret.png")
    monkeypatch.delenv(ENV, raising=False)
    yield d
    core.set_input_directory(old[0])
    core.set_output_directory(old[1])
    core.set_temp_directory(old[2])
    core.folder_names_and_paths.pop("clipasso_input", None)


@pytest.fixture(scope="session")
def common(core):
    load_pack()
    import importlib

    return importlib.import_module("comfyui_clipasso.nodes.common")


@pytest.fixture(scope="session")
def N(core):
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(ext.get_node_list())}


def run(node, **inputs):
    cls = node.PREPARE_CLASS_CLONE({})
    with torch.inference_mode():
        return cls.execute(**inputs)


def files_under(folder) -> list:
    return sorted(os.path.relpath(os.path.join(p, f), folder) for p, _, fs in os.walk(folder) for f in fs)


# --------------------------------------------------------------------------- the helper


def test_names_inside_the_input_folder_resolve_there(common, dirs):
    (dirs["input"] / "photos").mkdir()
    assert common.picture_path("photos", "'folder'") == os.path.realpath(dirs["input"] / "photos")
    # '..' that stays inside is fine: what counts is where the name leads
    assert common.picture_path("photos/../photos", "'folder'") == os.path.realpath(dirs["input"] / "photos")
    assert common.picture_path(str(dirs["input"] / "photos"), "'folder'") == os.path.realpath(dirs["input"] / "photos")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "sibling-prefix"])
def test_names_leading_out_are_refused_with_where_pictures_may_come_from(common, dirs, how):
    name = {
        "absolute": str(dirs["outside"]),
        "dotdot": "../outside",
        # a string-prefix check would take .../input2 for a part of .../input
        "sibling-prefix": str(dirs["input2"]),
    }[how]
    with pytest.raises(common.PathNotAllowedError) as err:
        common.picture_path(name, "'folder'")
    msg = str(err.value)
    assert f"'folder' {name!r} is refused" in msg
    assert os.path.realpath(dirs["input"]) in msg  # where pictures may come from
    assert "Pictures may come only from inside ComfyUI's input folder" in msg
    assert f"{ENV}=1" in msg  # and how the server's owner opts in


def test_symlinks_count_by_where_they_lead(common, dirs):
    (dirs["input"] / "out_link").symlink_to(dirs["outside"], target_is_directory=True)
    (dirs["input"] / "photos").mkdir()
    (dirs["input"] / "in_link").symlink_to(dirs["input"] / "photos", target_is_directory=True)
    (dirs["input"] / "file_link.png").symlink_to(dirs["outside"] / "secret.png")
    with pytest.raises(common.PathNotAllowedError, match="out_link") as err:
        common.picture_path("out_link", "'folder'")
    assert str(dirs["outside"]) not in str(err.value)  # where a symlink points is not told to the client
    with pytest.raises(common.PathNotAllowedError, match="file_link.png"):
        common.picture_path("file_link.png", "'folder'")
    assert common.picture_path("in_link", "'folder'") == os.path.realpath(dirs["input"] / "photos")
    # the output folder in the same way
    (dirs["output"] / "away").symlink_to(dirs["outside"], target_is_directory=True)
    with pytest.raises(common.PathNotAllowedError, match="inside ComfyUI's output folder"):
        common.output_path("away/sketches", "'output_folder'")
    assert common.output_path("sketches/a", "'output_folder'") == os.path.realpath(dirs["output"] / "sketches" / "a")


def test_configured_picture_folders_and_the_opt_in(common, core, dirs, monkeypatch):
    # a folder the server's owner registered (extra_model_paths.yaml: clipasso_input: <folder>)
    core.add_model_folder_path("clipasso_input", str(dirs["input2"]))
    assert common.picture_path(str(dirs["input2"]), "'folder'") == os.path.realpath(dirs["input2"])
    with pytest.raises(common.PathNotAllowedError) as err:
        common.picture_path(str(dirs["outside"]), "'folder'")
    assert os.path.realpath(dirs["input2"]) in str(err.value)
    # the owner's explicit opt-in lets any path through
    for off in ("", "0", "no"):
        monkeypatch.setenv(ENV, off)
        with pytest.raises(common.PathNotAllowedError):
            common.picture_path(str(dirs["outside"]), "'folder'")
    monkeypatch.setenv(ENV, "1")
    assert common.picture_path(str(dirs["outside"]), "'folder'") == os.path.realpath(dirs["outside"])
    assert common.picture_path("../outside", "'folder'") == os.path.realpath(dirs["outside"])


# --------------------------------------------------------------------------- the nodes

BATCH = dict(
    recursive=False,
    output_folder="paths/batch",
    png=False,
    force=False,
    preset="fast",
    strokes=2,
    seeds=1,
    seed=0,
    iterations=2,
    remove_background=False,
    loss_model="RN101",
    saliency_model="ViT-B-32",
    allow_download=False,
    loss="trace",
    saliency="none",
)


def test_batch_node_reads_only_inside_the_input_folder(N, common, dirs, monkeypatch):
    from PIL import Image

    batch = N["CLIPassoBatch"]
    for folder in (str(dirs["outside"]), "../outside", os.path.join(str(dirs["input"]), "..", "outside")):
        with pytest.raises(common.PathNotAllowedError, match="Pictures may come only from inside ComfyUI's input"):
            run(batch, folder=folder, **BATCH)
    # a folder inside whose picture is a symlink to a file elsewhere: refused, naming the picture
    (dirs["input"] / "mixed").mkdir()
    Image.new("RGB", (48, 48), "white").save(dirs["input"] / "mixed" / "own.png")
    (dirs["input"] / "mixed" / "borrowed.png").symlink_to(dirs["outside"] / "secret.png")
    with pytest.raises(common.PathNotAllowedError, match="the picture 'mixed/borrowed' is refused") as err:
        run(batch, folder="mixed", **BATCH)
    assert "secret" not in str(err.value)
    # an output folder leading out of the output folder
    with pytest.raises(common.PathNotAllowedError, match="'output_folder'"):
        run(batch, folder="mixed", **dict(BATCH, output_folder=str(dirs["outside"] / "sketches")))
    assert files_under(dirs["output"]) == [] and files_under(dirs["outside"]) == ["secret.png"]
    # the owner's opt-in: the absolute folder is sketched
    monkeypatch.setenv(ENV, "1")
    report, sketched = run(batch, folder=str(dirs["outside"]), **BATCH).args
    assert sketched == 1 and json.loads(report)["failed"] == 0
    assert "paths/batch/secret.svg" in [p.replace(os.sep, "/") for p in files_under(dirs["output"])]


def test_load_svg_reads_only_inside_comfyui_folders(N, common, dirs):
    from clipasso.output.svg import to_svg
    from clipasso.strokes import Strokes

    line = Strokes.from_points(torch.tensor([[[[2.0, 10.0], [8.0, 10.0], [14.0, 10.0], [18.0, 10.0]]]]), (20, 20))
    text = to_svg(line)
    (dirs["outside"] / "x.svg").write_text(text)
    (dirs["output"] / "made.svg").write_text(text)
    (dirs["input"] / "linked.svg").symlink_to(dirs["outside"] / "x.svg")
    load = N["CLIPassoLoadSVG"]
    for name in ("../outside/x.svg", str(dirs["outside"] / "x.svg"), "linked.svg"):
        msg = load.validate_inputs(svg_file=name, svg_text="")
        assert isinstance(msg, str) and f"'svg_file' {name!r} is refused" in msg, msg
        assert os.path.realpath(dirs["input"]) in msg
        with pytest.raises(common.PathNotAllowedError):
            run(load, svg_file=name, svg_text="")
    # core's annotation reads from the output folder, as its own loaders do
    assert load.validate_inputs(svg_file="made.svg [output]", svg_text="") is True
    got = run(load, svg_file="made.svg [output]", svg_text="").args[0]
    assert got.num_strokes == 1


def test_save_svg_prefix_stays_in_the_output_folder(N, common, dirs):
    from clipasso.strokes import Strokes

    line = Strokes.from_points(torch.tensor([[[[2.0, 10.0], [8.0, 10.0], [14.0, 10.0], [18.0, 10.0]]]]), (20, 20))
    save = N["CLIPassoSaveSVG"]
    (dirs["output"] / "away").symlink_to(dirs["outside"], target_is_directory=True)
    for prefix in ("away/sub/sketch", "../outside/sketch", str(dirs["outside"] / "sketch")):
        with pytest.raises(common.PathNotAllowedError, match="inside ComfyUI's output folder"):
            run(save, strokes=line, filename_prefix=prefix)
    assert files_under(dirs["outside"]) == ["secret.png"]  # not even a folder was made there
    assert not (dirs["outside"] / "sub").exists()
    out = run(save, strokes=line, filename_prefix="paths/sketch")
    assert out.ui.as_dict()["images"][0]["subfolder"] == "paths"


def test_load_models_tag_is_not_a_path(N):
    with pytest.raises(ValueError, match="'pretrained' is an open_clip tag"):
        run(
            N["CLIPassoLoadModels"],
            loss_model="RN101",
            saliency_model="ViT-B-32",
            pretrained="../../x",
            device="cpu",
            precision="auto",
            allow_download=False,
        )
