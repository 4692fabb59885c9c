"""The CLIPasso nodes for ComfyUI (V3 schema), one module per node family.

Every node id starts with ``CLIPasso`` and lives in the ``CLIPasso`` category. The nodes are thin:
they convert ComfyUI tensors, report progress, honour Cancel and hand over to the engine in
``clipasso``.
"""
from __future__ import annotations

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from . import init_node, matting_node, models_node, optimize_nodes, render_nodes, saliency_node, svg_nodes
from .common import models_dirs

NODE_MODULES = [models_node, matting_node, saliency_node, init_node, optimize_nodes, render_nodes, svg_nodes]

from . import abstraction_nodes  # noqa: E402 - auto abstraction and drawing order

NODE_MODULES.append(abstraction_nodes)


def all_nodes() -> list:
    return [node for module in NODE_MODULES for node in module.NODES]


class CLIPassoExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # register models/clipasso with folder_paths here: ComfyUI 0.3.x never calls on_load()
        models_dirs()
        return all_nodes()
