"""ComfyUI entry point of the CLIPasso node pack.

ComfyUI imports this file as the package of the pack folder and then calls `comfy_entrypoint()`
(V3 nodes). Importing it is cheap on purpose: the node modules, and with them the engine, are only
imported when ComfyUI asks for the node list; models, weights and rembg load when a node runs.

How the engine is found. The nodes import the engine as the top-level package ``clipasso``, the
same name the library, the CLI and the tests use, so one ``Strokes`` class exists per process and
a value made by one is accepted by the other. When the pack was not pip-installed, nothing puts
``clipasso`` on ``sys.path``; we then register the copy that sits beside this file under that name
(loading it by path, without adding the pack folder to ``sys.path``, which would expose this
pack's ``nodes`` and ``tests`` folders as top-level modules and shadow ComfyUI's own ``nodes``).
A ``clipasso`` found elsewhere (an older pip-installed copy) is never preferred over the one shipped
with these nodes.
"""

import importlib.util
import logging
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
_ENGINE_DIR = os.path.join(_PACK_DIR, "clipasso")


def _same_dir(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _register_engine():
    loaded = sys.modules.get("clipasso")
    if loaded is not None:
        where = os.path.dirname(getattr(loaded, "__file__", "") or "")
        if where and not _same_dir(where, _ENGINE_DIR):
            logging.warning(
                "[CLIPasso] using the clipasso engine already imported from %s, not the copy "
                "shipped in %s; if the nodes misbehave, uninstall the other copy",
                where,
                _ENGINE_DIR,
            )
        return
    spec = importlib.util.find_spec("clipasso")
    if spec is not None and spec.origin and _same_dir(os.path.dirname(spec.origin), _ENGINE_DIR):
        return  # an editable install of this very folder: plain `import clipasso` finds it
    spec = importlib.util.spec_from_file_location(
        "clipasso", os.path.join(_ENGINE_DIR, "__init__.py"), submodule_search_locations=[_ENGINE_DIR]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["clipasso"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["clipasso"]
        raise


_register_engine()

# Help pages (web/docs/<node id>/en.md, the frontend's locale layout) are served by ComfyUI from here.
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import CLIPassoExtension

    return CLIPassoExtension()
