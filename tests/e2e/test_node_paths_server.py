"""In a real ComfyUI server: workflows cannot make our nodes read pictures or SVGs from outside ComfyUI's
folders (absolute paths, '..'), and a refused batch writes nothing into the output folder."""

from __future__ import annotations

import json
import os

import pytest

from .client import PromptRejected

INPUT_NOTE = "Pictures may come only from inside ComfyUI's input folder"


def node_defaults(comfy, node_id: str) -> dict:
    """Every widget of a node at its default value, from the server's /object_info."""
    spec = comfy.object_info(node_id)[node_id]["input"]
    values = {}
    for group in ("required", "optional"):
        for name, (kind, *rest) in spec.get(group, {}).items():
            opts = rest[0] if rest else {}
            if "default" in opts:
                values[name] = opts["default"]
            elif isinstance(kind, list) and kind:  # a combo in the old list form
                values[name] = kind[0]
            elif kind == "COMBO" and opts.get("options"):
                values[name] = opts["options"][0]
    return values


def files_under(folder) -> list:
    return sorted(os.path.join(p, f) for p, _, fs in os.walk(folder) for f in fs)


@pytest.fixture
def outside_pictures(comfy_base):
    """A folder beside ComfyUI's input folder (so '../' reaches it) holding a picture and an SVG."""
    from PIL import Image

    folder = comfy_base["base"] / "outside_pictures"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (48, 48), "white").save(folder / "private.png")
    (folder / "private.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 20 20" width="20" '
        'height="20"><path d="M 2 2 C 5 5 9 9 18 18" fill="none" stroke="black"/>'
        "</svg>"
    )
    return folder


def test_batch_node_refuses_folders_outside_the_input_folder(comfy, comfy_base, outside_pictures):
    output = comfy_base["base"] / "output"
    before = files_under(output)
    inputs = node_defaults(comfy, "CLIPassoBatch")
    inputs.update(
        output_folder="paths_e2e",
        png=True,
        iterations=2,
        strokes=2,
        seeds=1,
        loss="trace",
        saliency="none",
        remove_background=False,
        allow_download=False,
    )
    for folder in (str(outside_pictures), "../outside_pictures"):
        run = comfy.run({"1": {"class_type": "CLIPassoBatch", "inputs": dict(inputs, folder=folder)}}, timeout=120)
        assert run.status == "error", folder
        assert run.error["node_type"] == "CLIPassoBatch"
        message = run.error["exception_message"]
        assert f"'folder' {folder!r} is refused" in message
        assert INPUT_NOTE in message and os.path.realpath(comfy_base["base"] / "input") in message
        assert "CLIPASSO_ALLOW_ANY_PATH=1" in message
    assert files_under(output) == before  # nothing sketched, no manifest
    assert not (output / "paths_e2e").exists()


def test_load_svg_refuses_files_outside_comfyui_folders(comfy, outside_pictures):
    for name in ("../outside_pictures/private.svg", str(outside_pictures / "private.svg")):
        prompt = {
            "1": {"class_type": "CLIPassoLoadSVG", "inputs": {"svg_file": name, "svg_text": ""}},
            "2": {"class_type": "CLIPassoSaveSVG", "inputs": {"strokes": ["1", 0], "filename_prefix": "paths_e2e/svg"}},
        }
        with pytest.raises(PromptRejected) as rejected:
            comfy.queue(prompt)
        body = json.dumps(rejected.value.body)
        assert f"'svg_file' {json.dumps(repr(name))[1:-1]} is refused" in body, body[:2000]
        assert "SVG files may come only from inside" in body
