"""Workflows load unchanged on the node inputs generated from the settings.

The UI copy of a workflow stores widget values by position; the API copy stores them by name. Mapping
every UI node's positional values through today's schema (inside the real ComfyUI 0.3.75 core) must
give the API copy's named values, and every value must be one the widget accepts. A renamed, removed
or reordered widget, a narrowed range or a dropped combo option fails here. Checked for the shipped
workflows and for the copies shipped with release 0.1 (tests/data/workflows_0.1, from before the
settings-first refactor), which is what users have saved.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack

WORKFLOWS = Path(__file__).resolve().parents[2] / "example_workflows"
OLD_WORKFLOWS = Path(__file__).resolve().parents[1] / "data" / "workflows_0.1"
ALL = sorted(WORKFLOWS.glob("*.json")) + sorted(OLD_WORKFLOWS.glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@pytest.fixture(scope="module")
def info():
    import_core(comfyui_or_skip())
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls.GET_NODE_INFO_V1() for cls in asyncio.run(ext.get_node_list())}


def _widgets(node_info):
    """(name, type, options) of every widget input, in the frontend's order."""
    out = []
    for section in ("required", "optional"):
        spec = node_info["input"].get(section, {})
        for name in node_info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            typ = "COMBO" if isinstance(entry[0], list) else entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            if typ == "COMBO" and isinstance(entry[0], list):
                opts = dict(opts, options=entry[0])
            if typ in WIDGET_TYPES and not opts.get("forceInput"):
                out.append((name, typ, opts))
    return out


def _positional(node_info, values):
    named, i = {}, 0
    for name, typ, opts in _widgets(node_info):
        if i >= len(values):
            break
        named[name] = (values[i], typ, opts)
        i += 1
        if opts.get("control_after_generate"):
            i += 1  # the frontend's "fixed"/"randomize" value after a seed
    assert i == len(values), f"{len(values) - i} widget value(s) left over"
    return named


def _accepts(typ, opts, value):
    if typ == "COMBO":
        return value in (opts.get("options") or [])
    if typ == "BOOLEAN":
        return isinstance(value, bool)
    if typ == "STRING":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return opts.get("min", -float("inf")) <= value <= opts.get("max", float("inf"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_workflow_widget_values_map_onto_the_generated_inputs(info, path):
    ui = json.loads(path.read_text())
    api = json.loads((path.parent / "api" / path.name).read_text())
    checked = 0
    for node in ui["nodes"]:
        if not node["type"].startswith("CLIPasso"):
            continue
        named = _positional(info[node["type"]], node.get("widgets_values", []))
        by_name = api[str(node["id"])]["inputs"]
        for name, (value, typ, opts) in named.items():
            assert _accepts(typ, opts, value), f"{node['type']}.{name} = {value!r} is not accepted by {opts}"
            if isinstance(by_name.get(name), list):  # a widget fed by a link (e.g. fps): the link gives the value
                continue
            assert by_name.get(name) == value, f"{node['type']}.{name}: UI {value!r}, API {by_name.get(name)!r}"
            checked += 1
        assert set(k for k, v in by_name.items() if not isinstance(v, list)) <= set(named) | {
            n for n, _, _ in _widgets(info[node["type"]])
        }, node["type"]
    assert checked > 0
