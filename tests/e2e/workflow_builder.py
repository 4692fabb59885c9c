"""The example workflows, described once and written in both ComfyUI formats.

Each graph below lists its nodes with their widget values and links. `to_api` turns one into the
API (prompt) format that /prompt executes; `to_ui` into the editor's save format (schema 0.4) that
example_workflows/*.json holds, using the server's /object_info to put widget values in the order the
frontend expects (widgets in input order, plus the hidden 'control after generate' value after a
seed and the upload button value of LoadImage).

Regenerate after changing a node's inputs (needs the e2e ComfyUI, fetched on first use):

    python tests/e2e/workflow_builder.py

The browser test then checks that the real frontend turns each UI file back into exactly the
API copy, so the two cannot drift apart silently.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "example_workflows"
API_DIR = WORKFLOWS / "api"
EXAMPLE_INPUT = "clipasso_example.jpg"  # clipasso/data/example.jpg, copied into ComfyUI's input folder
SOCKET_TYPES_WITH_WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def node(id, type, pos, widgets=None, links=None, title=None, models=None):
    """One node of a graph; ``models``: the files a loader needs ({name, url, directory}), which the
    frontend's missing-models dialog offers to download."""
    return {"id": id, "type": type, "pos": pos, "widgets": widgets or {}, "links": links or {}, "title": title,
            "models": models or []}


# The shipped workflows were made when text_weight defaulted to 0.1 and keep that value (their prompt is
# empty, so it changes nothing); saved graphs stay as users have them.
OLD_TEXT_WEIGHT = {"text_weight": 0.1}

SD_CKPT = "v1-5-pruned-emaonly-fp16.safetensors"
SCRIBBLE_CN = "control_v11p_sd15_scribble_fp16.safetensors"
SD_MODEL = {"name": SD_CKPT, "directory": "checkpoints",
            "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/" + SD_CKPT}
SCRIBBLE_MODEL = {"name": SCRIBBLE_CN, "directory": "controlnet",
                  "url": "https://huggingface.co/comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/main/"
                         + SCRIBBLE_CN}

GRAPHS: Dict[str, dict] = {
    "clipasso_pipeline": {
        "title": "CLIPasso: picture to sketch, step by step",
        "description": "Remove the background, find the salient parts with a CLIP ViT, place strokes, optimise "
                       "every seed against CLIP, keep the best, save it as SVG and as a PNG.",
        "nodes": [
            node(1, "LoadImage", [0, 0], {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoLoadModels", [0, 420]),
            node(3, "CLIPassoRemoveBackground", [380, 0], links={"image": (1, 0)}),
            node(4, "CLIPassoSaliency", [760, 0], links={"models": (2, 0), "image": (3, 0), "mask": (3, 1)}),
            node(5, "PreviewImage", [1140, 0], links={"images": (4, 1)}, title="Saliency"),
            node(6, "CLIPassoInitStrokes", [760, 330], {"seeds": 2},
                 links={"image": (3, 0), "saliency": (4, 0), "mask": (3, 1)}),
            node(7, "CLIPassoOptimize", [1140, 330], dict(OLD_TEXT_WEIGHT), links={"models": (2, 0), "image": (3, 0), "strokes": (6, 0)}),
            node(8, "CLIPassoSelectBest", [1520, 330], links={"strokes": (7, 0)}),
            node(9, "CLIPassoRasterize", [1900, 330], {"width": 512}, links={"strokes": (8, 0)}),
            node(10, "SaveImage", [2280, 330], {"filename_prefix": "clipasso/sketch"}, links={"images": (9, 0)}),
            node(11, "CLIPassoSaveSVG", [1900, 700], links={"strokes": (8, 0)}),
        ],
    },
    "clipasso_one_node": {
        "title": "CLIPasso: one node",
        "description": "The whole pipeline in a single CLIPasso Sketch node, saved as SVG.",
        "nodes": [
            node(1, "LoadImage", [0, 0], {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", [380, 0], dict(OLD_TEXT_WEIGHT), links={"image": (1, 0)}),
            node(3, "CLIPassoSaveSVG", [800, 0], links={"strokes": (2, 0)}),
            node(4, "PreviewImage", [800, 400], links={"images": (2, 1)}),
        ],
    },
    "clipasso_no_weights": {
        "title": "CLIPasso: sketch without CLIP weights",
        "description": "The one-box CLIPasso Sketch with the weights-free trace loss and strokes started inside "
                       "the object mask: nothing to download, only the bundled u2netp cuts the object out. A "
                       "faithful tracing of the outline rather than CLIPasso's semantic abstraction.",
        "nodes": [
            node(1, "LoadImage", [0, 0], {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", [380, 0], dict(OLD_TEXT_WEIGHT, loss="trace", saliency="mask"),
                 links={"image": (1, 0)}),
            node(3, "CLIPassoSaveSVG", [800, 0], links={"strokes": (2, 0)}),
            node(4, "PreviewImage", [800, 400], links={"images": (2, 1)}),
        ],
    },
    "clipasso_from_diffusion": {
        "title": "CLIPasso: sketch a generated picture",
        "description": "A Stable Diffusion 1.5 checkpoint paints an object on a plain background; CLIPasso "
                       f"sketches it. Needs {SD_CKPT} in models/checkpoints.",
        "nodes": [
            node(1, "CheckpointLoaderSimple", [0, 0], {"ckpt_name": SD_CKPT}, models=[SD_MODEL]),
            node(2, "CLIPTextEncode", [380, 0], {"text": "a photo of a single cat sitting, whole body, plain white "
                                                         "background, studio light"},
                 links={"clip": (1, 1)}, title="Positive"),
            node(3, "CLIPTextEncode", [380, 260], {"text": "cluttered background, several animals, text, watermark, "
                                                           "blurry"}, links={"clip": (1, 1)}, title="Negative"),
            node(4, "EmptyLatentImage", [380, 520], {"width": 512, "height": 512, "batch_size": 1}),
            node(5, "KSampler", [800, 0], {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                           "scheduler": "normal", "denoise": 1.0},
                 links={"model": (1, 0), "positive": (2, 0), "negative": (3, 0), "latent_image": (4, 0)}),
            node(6, "VAEDecode", [1180, 0], links={"samples": (5, 0), "vae": (1, 2)}),
            node(7, "CLIPassoSketch", [1180, 200], dict(OLD_TEXT_WEIGHT), links={"image": (6, 0)}),
            node(8, "CLIPassoSaveSVG", [1600, 0], links={"strokes": (7, 0)}),
            node(9, "PreviewImage", [1600, 400], links={"images": (7, 1)}),
        ],
    },
    "clipasso_scribble_controlnet": {
        "title": "CLIPasso: sketch as ControlNet scribble",
        "description": "The sketch, drawn as white lines on black at 512 px, conditions a scribble ControlNet. "
                       f"Needs {SD_CKPT} (checkpoints) and {SCRIBBLE_CN} (controlnet).",
        "nodes": [
            node(1, "LoadImage", [0, 0], {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", [380, 0], dict(OLD_TEXT_WEIGHT), links={"image": (1, 0)}),
            node(3, "CLIPassoRasterize", [800, 0], {"width": 512, "height": 512, "stroke_color": "#ffffff",
                                                    "thickness": 2.0, "background": "#000000"},
                 links={"strokes": (2, 0)}, title="Scribble"),
            node(4, "PreviewImage", [1180, 0], links={"images": (3, 0)}),
            node(5, "CheckpointLoaderSimple", [0, 420], {"ckpt_name": SD_CKPT}, models=[SD_MODEL]),
            node(6, "ControlNetLoader", [0, 560], {"control_net_name": SCRIBBLE_CN}, models=[SCRIBBLE_MODEL]),
            node(7, "CLIPTextEncode", [380, 420], {"text": "a cute cat, watercolour illustration, soft colours"},
                 links={"clip": (5, 1)}, title="Positive"),
            node(8, "CLIPTextEncode", [380, 680], {"text": "text, watermark, blurry"}, links={"clip": (5, 1)},
                 title="Negative"),
            node(9, "ControlNetApplyAdvanced", [800, 420], {"strength": 0.9},
                 links={"positive": (7, 0), "negative": (8, 0), "control_net": (6, 0), "image": (3, 0),
                        "vae": (5, 2)}),
            node(10, "EmptyLatentImage", [800, 720], {"width": 512, "height": 512, "batch_size": 1}),
            node(11, "KSampler", [1180, 420], {"seed": 7, "steps": 25, "cfg": 7.0, "sampler_name": "euler",
                                              "scheduler": "normal", "denoise": 1.0},
                 links={"model": (5, 0), "positive": (9, 0), "negative": (9, 1), "latent_image": (10, 0)}),
            node(12, "VAEDecode", [1560, 420], links={"samples": (11, 0), "vae": (5, 2)}),
            node(13, "SaveImage", [1560, 560], {"filename_prefix": "clipasso/scribble"}, links={"images": (12, 0)}),
        ],
    },
    "clipasso_abstraction": {
        "title": "CLIPasso: automatic abstraction and drawing order",
        "description": "Sketch with a generous 32 strokes, let Auto Abstraction prune them to the fewest that keep "
                       "90% of the sketch's quality (loss-versus-strokes curve shown), then put the strokes in "
                       "drawing order and save the drawing being made as an animated WebP and the sketch as SVG.",
        "nodes": [
            node(1, "LoadImage", [0, 0], {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoLoadModels", [0, 420]),
            node(3, "CLIPassoRemoveBackground", [380, 0], links={"image": (1, 0)}),
            node(4, "CLIPassoSaliency", [760, 0], links={"models": (2, 0), "image": (3, 0), "mask": (3, 1)}),
            node(5, "CLIPassoInitStrokes", [760, 330], {"strokes": 32, "seeds": 2},
                 links={"image": (3, 0), "saliency": (4, 0), "mask": (3, 1)}),
            node(6, "CLIPassoOptimize", [1140, 0], dict(OLD_TEXT_WEIGHT), links={"models": (2, 0), "image": (3, 0), "strokes": (5, 0)}),
            node(7, "CLIPassoAutoAbstraction", [1520, 0], {"fidelity": 0.9},
                 links={"models": (2, 0), "image": (3, 0), "strokes": (6, 0)}),
            node(8, "PreviewImage", [1900, 0], links={"images": (7, 3)}, title="Loss versus strokes"),
            node(9, "CLIPassoDrawingOrder", [1520, 460], {"frame_size": 448},
                 links={"models": (2, 0), "image": (3, 0), "strokes": (7, 0)}),
            node(10, "SaveAnimatedWEBP", [1900, 460], {"filename_prefix": "clipasso/drawing", "fps": 4.0,
                                                    "method": "default"},
                 links={"images": (9, 1)}),
            node(11, "CLIPassoSaveSVG", [1900, 900], links={"strokes": (9, 0)}),
        ],
    },
    "clipasso_styled_text": {
        "title": "CLIPasso: text guidance, styled strokes, high-resolution output",
        "description": "Sketch with a text prompt nudging the sketch ('a cat, side view'), strokes coloured from the "
                       "picture with their width and opacity optimised; the winner is saved as SVG (vector, any "
                       "size) and rendered at 1024 px. (A fixed pen: set pen_width on Optimize Sketch.)",
        "nodes": [
            node(1, "LoadImage", [0, 0], {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoLoadModels", [0, 420]),
            node(3, "CLIPassoRemoveBackground", [380, 0], links={"image": (1, 0)}),
            node(4, "CLIPassoSaliency", [760, 0], links={"models": (2, 0), "image": (3, 0), "mask": (3, 1)}),
            node(5, "CLIPassoInitStrokes", [760, 330], {"strokes": 24, "seeds": 2},
                 links={"image": (3, 0), "saliency": (4, 0), "mask": (3, 1)}),
            node(6, "CLIPassoOptimize", [1140, 0], {"text": "a cat, side view", "text_weight": 0.3,
                                                    "optimize_width": True, "optimize_opacity": True,
                                                    "color_from_image": True},
                 links={"models": (2, 0), "image": (3, 0), "strokes": (5, 0)}),
            node(7, "CLIPassoSelectBest", [1520, 0], links={"strokes": (6, 0)}),
            node(8, "CLIPassoRasterize", [1900, 0], {"width": 1024}, links={"strokes": (7, 0)},
                 title="Rasterize at 1024 px"),
            node(9, "SaveImage", [2280, 0], {"filename_prefix": "clipasso/styled"}, links={"images": (8, 0)}),
            node(10, "CLIPassoSaveSVG", [1900, 420], {"filename_prefix": "clipasso/styled"},
                 links={"strokes": (7, 0)}),
        ],
    },
}

# graphs whose models every user has (ours are random-weight tiny ones in the tests): run by the e2e tests
RUNNABLE = ["clipasso_pipeline", "clipasso_one_node", "clipasso_no_weights"]


# --------------------------------------------------------------------------- schema helpers

def _inputs(info: dict) -> List[tuple]:
    """(name, type, options, optional) for every input of a node, in the frontend's order."""
    out = []
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            typ = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            out.append((name, "COMBO" if isinstance(typ, list) else typ, opts, section == "optional"))
    return out


def _is_widget(typ, opts) -> bool:
    return typ in SOCKET_TYPES_WITH_WIDGETS and not opts.get("forceInput")


def _widget_value(name, typ, opts, given):
    if name in given:
        return given[name]
    if "default" in opts:
        return opts["default"]
    if typ == "COMBO":
        options = opts.get("options")
        return options[0] if options else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(typ)


def _combo_options(info, name):
    for section in ("required", "optional"):
        entry = info["input"].get(section, {}).get(name)
        if entry is not None:
            if isinstance(entry[0], list):
                return entry[0]
            if len(entry) > 1 and isinstance(entry[1], dict):
                return entry[1].get("options")
    return None


# --------------------------------------------------------------------------- formats

def to_api(graph: dict, object_info: dict) -> dict:
    prompt = {}
    for n in graph["nodes"]:
        info = object_info[n["type"]]
        inputs = {}
        for name, typ, opts, optional in _inputs(info):
            if name in n["links"]:
                src, slot = n["links"][name]
                inputs[name] = [str(src), slot]
            elif _is_widget(typ, opts):
                if optional and name not in n["widgets"] and "default" not in opts:
                    continue
                inputs[name] = _widget_value(name, typ, opts, n["widgets"])
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs,
                                "_meta": {"title": n["title"] or info.get("display_name") or n["type"]}}
    return prompt


def to_ui(graph: dict, object_info: dict) -> dict:
    nodes, links = [], []
    link_id = 0
    by_id = {n["id"]: n for n in graph["nodes"]}
    out_links: Dict[tuple, List[int]] = {}
    socket_index: Dict[tuple, int] = {}
    # sockets first, so link target slots are known
    for n in graph["nodes"]:
        sockets = [(name, typ) for name, typ, opts, _ in _inputs(object_info[n["type"]])
                   if not _is_widget(typ, opts)]
        for i, (name, _) in enumerate(sockets):
            socket_index[(n["id"], name)] = i
        n["_sockets"] = sockets
    for n in graph["nodes"]:
        for name, (src, slot) in n["links"].items():
            link_id += 1
            typ = object_info[by_id[src]["type"]]["output"][slot]
            links.append([link_id, src, slot, n["id"], socket_index[(n["id"], name)], typ])
            out_links.setdefault((src, slot), []).append(link_id)
            n.setdefault("_in", {})[name] = link_id
    for order, n in enumerate(graph["nodes"]):
        info = object_info[n["type"]]
        widgets_values = []
        for name, typ, opts, _ in _inputs(info):
            if not _is_widget(typ, opts):
                continue
            widgets_values.append(_widget_value(name, typ, opts, n["widgets"]))
            if opts.get("control_after_generate"):
                widgets_values.append("fixed")
            if opts.get("image_upload"):
                widgets_values.append("image")
        inputs = [{"name": name, "type": typ, "link": n.get("_in", {}).get(name)} for name, typ in n["_sockets"]]
        outputs = []
        for slot, (typ, oname) in enumerate(zip(info["output"], info["output_name"])):
            outputs.append({"name": oname, "type": typ, "links": out_links.get((n["id"], slot), []),
                            "slot_index": slot})
        height = 46 + 24 * max(len(inputs), len(outputs)) + _widgets_height(info, n["type"])
        ui_node = {"id": n["id"], "type": n["type"], "pos": n["pos"], "size": [340, height], "flags": {},
                   "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                   "properties": {"Node name for S&R": n["type"], **({"models": n["models"]} if n["models"] else {})},
                   "widgets_values": widgets_values}
        if n["title"]:
            ui_node["title"] = n["title"]
        nodes.append(ui_node)
    for n in graph["nodes"]:
        n.pop("_sockets", None)
        n.pop("_in", None)
    _no_overlaps(nodes)
    # open zoomed so the whole graph fits a 1600x900 window (the thumbnails are taken that way)
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = round(min(1.0, 1500 / (right + 60), 820 / (bottom + 60)), 3)
    return {"last_node_id": max(by_id), "last_link_id": link_id, "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": scale, "offset": [40, 60]},
                                    "info": {"title": graph["title"], "description": graph["description"]}},
            "version": 0.4}


TITLE_HEIGHT = 30   # the frontend draws a node's title bar above its position
GAP = 40


def _widgets_height(info: dict, node_type: str) -> int:
    """Room for a node's widgets (a multiline text box and an image preview are taller)."""
    height = 0
    for name, typ, opts, _ in _inputs(info):
        if not _is_widget(typ, opts):
            continue
        height += 110 if typ == "STRING" and opts.get("multiline") else 28
        if opts.get("image_upload"):
            height += 300  # the picture preview under LoadImage's widgets
    return height


def boxes_overlap(a, b, gap=0) -> bool:
    """Whether two UI nodes' boxes (title bar included) come closer than ``gap``."""
    ax, ay = a["pos"]
    bx, by = b["pos"]
    aw, ah = a["size"]
    bw, bh = b["size"]
    return (ax < bx + bw and bx < ax + aw
            and ay - TITLE_HEIGHT < by + bh + gap and by - TITLE_HEIGHT < ay + ah + gap)


def _no_overlaps(nodes) -> None:
    """Move nodes down, column by column, until no node covers another."""
    placed = []
    for n in sorted(nodes, key=lambda n: (n["pos"][0], n["pos"][1])):
        moved = True
        while moved:
            moved = False
            for p in placed:
                if boxes_overlap(n, p, GAP):
                    n["pos"] = [n["pos"][0], p["pos"][1] + p["size"][1] + GAP + TITLE_HEIGHT]
                    moved = True
        placed.append(n)


def write_all(object_info: dict, out: Optional[Path] = None) -> List[Path]:
    out = Path(out or WORKFLOWS)
    (out / "api").mkdir(parents=True, exist_ok=True)
    written = []
    for name, graph in GRAPHS.items():
        for path, data in ((out / f"{name}.json", to_ui(graph, object_info)),
                           (out / "api" / f"{name}.json", to_api(graph, object_info))):
            path.write_text(json.dumps(data, indent=2) + "\n")
            written.append(path)
    return written


def main():  # pragma: no cover - a maintenance tool
    import tempfile

    sys.path.insert(0, str(REPO / "tests"))
    from e2e.comfy_env import ensure_comfyui
    from e2e.server import ComfyServer, prepare_base
    import requests

    with tempfile.TemporaryDirectory() as tmp:
        prepare_base(Path(tmp))
        server = ComfyServer(ensure_comfyui(), Path(tmp)).start()
        try:
            info = requests.get(server.url + "/object_info", timeout=60).json()
        finally:
            server.stop()
    for p in write_all(info):
        print(p.relative_to(REPO))


if __name__ == "__main__":
    main()
