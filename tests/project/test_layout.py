"""The engine's shape: no import cycles (module-level or inside functions), benchmark-only code outside
the engine's import graph, every option defined once."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "clipasso"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ENGINE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph():
    """{module: set of clipasso modules it imports anywhere in its code}."""
    modules = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets.append(mod)
                targets += [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _is_package_init_edge(a, b):
    """A package's __init__ re-exporting its own submodules is not a cycle between stages."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_the_engine_has_no_import_cycle():
    graph = import_graph()
    graph = {a: {b for b in deps if not _is_package_init_edge(a, b)} for a, deps in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_engine_never_imports_comfyui_or_the_benchmarks():
    for path in ENGINE.rglob("*.py"):
        text = path.read_text()
        for bad in (
            "import comfy",
            "from comfy",
            "folder_paths",
            "from bench",
            "import bench",
            "from tests",
            "import tests",
        ):
            assert bad not in text, f"{path.relative_to(ENGINE.parent)} has {bad!r}"


def test_every_option_is_defined_once_with_help_and_a_valid_default():
    from clipasso.settings import PRESET_CHANGES, STAGES, FIELD_STAGE, SketchSettings, field_option

    seen = {}
    for stage, cls in STAGES:
        for f in dataclasses.fields(cls):
            assert f.name not in seen, f"{f.name} is defined in {seen[f.name]} and {stage}"
            seen[f.name] = stage
            opt = f.metadata["option"]
            assert opt.help and not opt.help.endswith("."), f.name
    for preset, changes in PRESET_CHANGES.items():
        assert set(changes) <= set(FIELD_STAGE), preset
        assert list(SketchSettings.from_preset(preset).problems()) == [], preset
    assert field_option("strokes").problem("strokes", 0)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("strokes", 0),
        ("strokes", 2000),
        ("lr", 0.0),
        ("canvas", 32),
        ("loss", "pixels"),
        ("framing", "crop"),
        ("seeds", 0),
        ("text", 3),
        ("auto_strokes", 1.5),
        ("min_gain", 1.0),
        ("temperature", float("nan")),
    ],
)
def test_validate_is_the_one_place_that_refuses_a_value(name, bad):
    from clipasso.settings import SettingsError, SketchSettings

    with pytest.raises(SettingsError, match=name):
        SketchSettings().replace(**{name: bad}).validate()


def test_release_0_1_module_names_are_gone():
    """0.3 dropped the flat names of 0.1 (``clipasso.images``, ``clipasso.raster``, ...): each module has one name."""
    import importlib

    import clipasso

    assert not hasattr(clipasso, "MOVED")
    for old in (
        "images",
        "matting",
        "xdog",
        "saliency",
        "init",
        "losses",
        "text",
        "style",
        "select",
        "abstraction",
        "order",
        "raster",
        "svg",
        "plots",
        "metrics",
    ):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"clipasso.{old}")
    assert clipasso.sketch is importlib.import_module("clipasso.pipeline").sketch


def test_benchmark_only_code_stays_out_of_the_pipeline_import_graph():
    graph = import_graph()
    reach, todo = set(), ["clipasso.pipeline", "clipasso.cli"]
    while todo:
        mod = todo.pop()
        if mod in reach:
            continue
        reach.add(mod)
        todo += [d for d in graph.get(mod, ()) if not (mod == "clipasso.cli" and d == "clipasso.report")]
    assert not {m for m in reach if m.startswith(("clipasso.report", "clipasso.testing"))}, sorted(reach)


def test_every_engine_error_derives_from_the_one_base_class():
    import importlib
    import inspect

    from clipasso.errors import ClipassoError

    found = []
    for path in ENGINE.rglob("*.py"):
        name = _module_name(path)
        if name.startswith("clipasso.testing"):
            continue
        module = importlib.import_module(name)
        for cls_name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and issubclass(cls, Exception)
                and not issubclass(cls, Warning)
                and cls.__module__ == name
            ):
                found.append(cls)
                assert issubclass(cls, ClipassoError), f"{name}.{cls_name} does not derive from ClipassoError"
    assert len(found) >= 15


def test_the_cli_prints_any_engine_error_as_one_line_with_status_1(tmp_path, capsys):
    from clipasso.cli import main

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rc = main(
        [
            "sketch",
            str(broken),
            "-o",
            str(tmp_path / "out.svg"),
            "--loss",
            "trace",
            "--saliency",
            "none",
            "--no-background-removal",
            "--iterations",
            "1",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("clipasso: error: ") and "Traceback" not in err


# --------------------------------------------------------------------------- layers that tell the truth

# The engine's layers, lowest first: a module imports only from its own layer or a lower one. The
# stages follow the pipeline's order (prepare, place, objective, optimize, post, output), so nothing
# imports a later stage; the rasterizer (render) sits below every stage that draws.
LAYERS = (
    ("errors", "device", "atomic"),
    ("settings",),
    ("strokes",),
    ("render",),
    ("models",),
    ("prepare",),
    ("place",),
    ("objective",),
    ("optimize",),
    ("post",),
    ("output",),
    ("scene",),  # scene mode's layers (clipasso.scene), which pipeline.sketch runs with scene=True
    ("pipeline",),
    ("video",),  # a clip sketched frame by frame (clipasso.video), on top of pipeline.sketch
    ("batch",),
    ("cli", "report", "__main__"),
    ("testing",),
)
PACK = ENGINE.parent / "nodes"
DECIDES_PRECISION = "clipasso/device.py"
PRECISION_WORDS = {"fp32", "fp16", "bf16", "off"}


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else module
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS in tests/project/test_layout.py")


def _code_files():
    """(shown path, parsed tree) of every engine and node module."""
    for path in sorted([*ENGINE.rglob("*.py"), *PACK.rglob("*.py")]):
        yield str(path.relative_to(ENGINE.parent)), ast.parse(path.read_text())


def test_nothing_imports_a_later_stage():
    """render is below objective, optimize, post and output; prepare < place < objective < optimize < post <
    output < pipeline < the front-ends. Imports inside functions count too."""
    wrong = []
    for module, deps in import_graph().items():
        if module == "clipasso":  # the package's lazy names (sketch, render, ...) reach everything on purpose
            continue
        for dep in deps:
            if dep != "clipasso" and _layer(dep) > _layer(module):
                wrong.append(f"{module} imports {dep} (a later layer)")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_rasterizer_is_below_every_stage_that_renders():
    graph = import_graph()
    users = {m for m, deps in graph.items() if any(d.startswith("clipasso.render") for d in deps)}
    assert {
        "clipasso.objective",
        "clipasso.optimize.loop",
        "clipasso.post.abstraction",
        "clipasso.output.animation",
    } <= users
    assert not any(
        d.startswith(("clipasso.objective", "clipasso.optimize", "clipasso.post", "clipasso.output"))
        for m in graph
        if m.startswith("clipasso.render")
        for d in graph[m]
    )
    assert not (ENGINE / "output" / "raster.py").exists()


def test_one_place_decides_device_and_precision():
    """Only clipasso/device.py calls torch.autocast, asks torch which accelerators exist, or compares /
    lists precision words; everyone else asks it (the settings' choices and the node's widget included)."""
    wrong = []
    for shown, tree in _code_files():
        if shown == DECIDES_PRECISION or shown.startswith("clipasso/testing/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("autocast", "is_available", "is_bf16_supported"):
                wrong.append(f"{shown}:{node.lineno} uses .{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "GradScaler" and "policies" not in shown:
                wrong.append(f"{shown}:{node.lineno} makes a GradScaler")
            holders = []
            if isinstance(node, ast.Compare):
                holders = [node.left, *node.comparators]
            elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                holders = list(node.elts)
            elif isinstance(node, ast.Dict):
                holders = [k for k in node.keys if k is not None]
            for h in holders:
                if isinstance(h, ast.Constant) and h.value in PRECISION_WORDS - {"off"}:
                    wrong.append(f"{shown}:{h.lineno} reads the precision word {h.value!r}")
    assert not wrong, "\n".join(wrong)


def test_the_precision_words_are_one_vocabulary():
    from clipasso.device import PRECISION_ALIASES, PRECISIONS, precision_word
    from clipasso.settings import field_option

    assert field_option("mixed_precision").choices is PRECISIONS
    assert field_option("mixed_precision").canonical is precision_word
    assert set(PRECISION_ALIASES.values()) <= set(PRECISIONS) and not set(PRECISION_ALIASES) & set(PRECISIONS)
    # the node's widget keeps its name and takes its words from the setting: setting_input("precision",
    # field="mixed_precision", ...)
    calls = [
        node
        for node in ast.walk(ast.parse((PACK / "models.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setting_input"
    ]
    precision = [c for c in calls if c.args and isinstance(c.args[0], ast.Constant) and c.args[0].value == "precision"]
    assert len(precision) == 1, "Load CLIPasso Models has no 'precision' widget built by setting_input"
    fields = {k.arg: k.value.value for k in precision[0].keywords if isinstance(k.value, ast.Constant)}
    assert fields.get("field") == "mixed_precision"


def test_no_private_name_crosses_a_module():
    """``from x import _name`` (or ``module._name``) between the pack's own modules: a name another module
    needs is public."""
    wrong = []
    for shown, tree in _code_files():
        imported_modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                ours = node.level or (node.module or "").split(".")[0] in ("clipasso", "nodes")
                if not ours:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        wrong.append(f"{shown}:{node.lineno} imports {alias.name} from {node.module or '.'}")
                    imported_modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                imported_modules |= {
                    (a.asname or a.name).split(".")[0]
                    for a in node.names
                    if a.name.split(".")[0] in ("clipasso", "nodes")
                }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules
            ):
                wrong.append(f"{shown}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not wrong, "\n".join(wrong)
