"""Session fixtures: one real ComfyUI server for all end-to-end and browser tests."""

from __future__ import annotations

import time

import pytest

from clipasso.testing.external import on_ci

from .client import ComfyClient
from .comfy_env import comfyui_or_skip
from .server import ComfyServer, prepare_base

TIMINGS = {}


@pytest.fixture(scope="session")
def comfyui_tree():
    t0 = time.monotonic()
    tree = comfyui_or_skip()
    TIMINGS["comfyui setup (download + requirements)"] = time.monotonic() - t0
    return tree


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    info = prepare_base(base)
    info["base"] = base
    return info


@pytest.fixture(scope="session")
def comfy_server(comfyui_tree, comfy_base):
    server = ComfyServer(comfyui_tree, comfy_base["base"])
    server.start()
    TIMINGS["comfyui server start"] = server.startup_seconds
    yield server
    server.stop()


@pytest.fixture(scope="session")
def comfy(comfy_server):
    return ComfyClient(comfy_server.host, comfy_server.port)


@pytest.fixture(scope="session")
def matting_weights(comfy_base):
    """The example workflows remove the background with rembg's u2netp; nothing may be downloaded."""
    if comfy_base["u2netp"] is None:
        msg = (
            "rembg's u2netp.onnx is needed by the example workflows: clipasso/data/u2netp.onnx is "
            "missing (a broken checkout?); set U2NET_HOME to a folder that holds it"
        )
        if on_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return comfy_base["u2netp"]


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "ComfyUI end-to-end timings")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"{k}: {v:.1f} s")
