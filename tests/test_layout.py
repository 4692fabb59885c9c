"""The engine's shape: no import cycles (module-level or inside functions), benchmark-only code outside
the engine's import graph, every option defined once."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "clipasso"


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
                    base = base[:len(base) - (node.level - 1)]
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
                return stack[stack.index(d):] + [d]
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
        for bad in ("import comfy", "from comfy", "folder_paths", "from bench", "import bench", "from tests",
                    "import tests"):
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


@pytest.mark.parametrize("name, bad", [("strokes", 0), ("strokes", 2000), ("lr", 0.0), ("canvas", 32),
                                       ("loss", "pixels"), ("framing", "crop"), ("seeds", 0), ("text", 3),
                                       ("auto_strokes", 1.5), ("min_gain", 1.0), ("temperature", float("nan"))])
def test_validate_is_the_one_place_that_refuses_a_value(name, bad):
    from clipasso.settings import SettingsError, SketchSettings

    with pytest.raises(SettingsError, match=name):
        SketchSettings().replace(**{name: bad}).validate()


def test_release_0_1_module_names_still_import_as_the_moved_modules():
    import importlib

    import clipasso

    for old, new in clipasso.MOVED.items():
        assert importlib.import_module(f"clipasso.{old}") is importlib.import_module(f"clipasso.{new}"), old
    from clipasso.svg import to_svg  # noqa: F401 - the README's 0.1 paths
    from clipasso.raster import render  # noqa: F401
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
            if inspect.isclass(cls) and issubclass(cls, Exception) and not issubclass(cls, Warning) \
                    and cls.__module__ == name:
                found.append(cls)
                assert issubclass(cls, ClipassoError), f"{name}.{cls_name} does not derive from ClipassoError"
    assert len(found) >= 15


def test_the_cli_prints_any_engine_error_as_one_line_with_status_1(tmp_path, capsys):
    from clipasso.cli import main

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rc = main(["sketch", str(broken), "-o", str(tmp_path / "out.svg"), "--loss", "trace", "--saliency", "none",
               "--no-background-removal", "--iterations", "1", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("clipasso: error: ") and "Traceback" not in err
