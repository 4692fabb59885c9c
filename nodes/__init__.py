"""The CLIPasso nodes for ComfyUI (V3 schema), one module per stage (clipasso's folders):

    models (Load CLIPasso Models), prepare (Remove Background), place (ViT Saliency, Initialize Strokes),
    optimize (Optimize Sketch), post (Select Best, Auto Abstraction, Drawing Order), output (Rasterize,
    Save SVG, Load SVG), scene (Split Scene Layers, Combine Sketch Layers), pipeline (the one-box CLIPasso
    Sketch), video (CLIPasso Sketch Video: the same strokes in every frame of a clip); inputs generated from
    the settings in `inputs`, shared conversions in `common`.

Every node id starts with ``CLIPasso`` and lives in the ``CLIPasso`` category. The nodes are thin:
they convert ComfyUI tensors, report progress, honour Cancel and hand over to the engine in
``clipasso``.
"""

from __future__ import annotations

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from . import models, optimize, output, pipeline, place, post, prepare, scene, video
from .common import models_dirs

# one module per stage of the pipeline (clipasso's folders), in pipeline order
NODE_MODULES = [models, prepare, place, optimize, post, scene, output, pipeline, video]


def all_nodes() -> list:
    return [node for module in NODE_MODULES for node in module.NODES]


class CLIPassoExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # register models/clipasso with folder_paths here: ComfyUI 0.3.x never calls on_load()
        models_dirs()
        return all_nodes()
