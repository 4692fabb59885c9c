"""Small randomly initialised open_clip models written to disk, for tests without pretrained weights.

Importable without pytest. The files are what a user with a custom model would put in the models
folder: an open_clip model config ``<name>.json`` beside ``<name>.safetensors``, so they are loaded
by name through the real loader (`clipasso.models.load_clip(name, models_dir=folder)`).

    from clipasso.testing.tiny_models import write_tiny_models
    paths = write_tiny_models("/tmp/models")   # {'rn': ..., 'vit': ..., 'rn_name': ..., ...}

Both encoders take 224x224 input like the real ones. The ResNet is a CLIP ``ModifiedResNet``
(stem, layer1..4, attention pool) with width 8 and one block per stage; the ViT has patch 32
(a 7x7 grid like ViT-B/32), width 64, 3 blocks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

TINY_RN = "clipasso-tiny-rn"
TINY_VIT = "clipasso-tiny-vit"

# A text tower is part of every CLIP model; small, but with the full vocabulary of open_clip's
# tokenizer so text prompts can be encoded (text guidance). The image tower is built first, so its
# weights do not depend on this.
_TEXT_CFG = {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}

TINY_CONFIGS = {
    TINY_RN: {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16, "patch_size": None},
        "text_cfg": _TEXT_CFG,
    },
    TINY_VIT: {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 224, "layers": 3, "width": 64, "head_width": 32, "patch_size": 32},
        "text_cfg": _TEXT_CFG,
    },
}


def _save(name: str, cfg: dict, folder: Path, seed: int, file_stem: str = None) -> Dict[str, str]:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    perturb_norms(model, seed)
    stem = file_stem or name
    cfg_path = folder / f"{stem}.json"
    w_path = folder / f"{stem}.safetensors"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(w_path))
    return {"config": str(cfg_path), "weights": str(w_path)}


def perturb_norms(model, seed: int) -> None:
    """open_clip zero-initialises some BatchNorm scales (last BN of each block); give every norm a
    random non-trivial scale so all features respond to the input as in a trained network."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    bns = []
    with torch.no_grad():
        for m in model.visual.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, torch.nn.BatchNorm2d):
                bns.append(m)
        if bns:
            # Calibrate BatchNorm statistics on random images (cumulative average), as one would after
            # changing a network: without it activations of a random ResNet shrink layer by layer and
            # every loss is ~1e-7.
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            size = model.visual.image_size
            size = size[0] if isinstance(size, (tuple, list)) else size
            imgs = torch.rand(8, 3, 8, 8, generator=g)
            imgs = torch.nn.functional.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False)
            imgs = (imgs - 0.45) / 0.27
            model.visual.train()
            model.visual(imgs)
            model.visual.eval()
            for m in bns:
                m.momentum = 0.1


def write_tiny_models(folder, seed: int = 0, as_defaults: bool = False) -> Dict[str, str]:
    """Write the tiny ResNet and ViT into ``folder``; returns their names and file paths.

    ``as_defaults=True`` also writes the same tiny architectures under the default names
    ``RN101-openai`` and ``ViT-B-32-openai`` (with ``RN101.json`` / ``ViT-B-32.json`` configs), so code
    that loads the defaults from ``folder`` (e.g. a ComfyUI node left at its default settings) finds
    them. Only use that in a throw-away folder: the configs there override the real architectures.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rn = _save(TINY_RN, TINY_CONFIGS[TINY_RN], folder, seed)
    vit = _save(TINY_VIT, TINY_CONFIGS[TINY_VIT], folder, seed + 100)
    out = {
        "folder": str(folder),
        "rn_name": TINY_RN,
        "vit_name": TINY_VIT,
        "rn": rn["weights"],
        "rn_config": rn["config"],
        "vit": vit["weights"],
        "vit_config": vit["config"],
    }
    if as_defaults:
        for alias, tiny, s in (("RN101", TINY_RN, seed), ("ViT-B-32", TINY_VIT, seed + 100)):
            files = _save(alias, TINY_CONFIGS[tiny], folder, s, file_stem=f"{alias}-openai")
            # <name>.json is where the loader looks for a custom config of a model asked for by name.
            os.replace(files["config"], folder / f"{alias}.json")
            out[f"{alias}_weights"] = files["weights"]
    return out


if __name__ == "__main__":  # python tests/tiny_models.py FOLDER [--as-defaults]
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(
        json.dumps(
            write_tiny_models(args[0] if args else "tiny_models", as_defaults="--as-defaults" in sys.argv), indent=2
        )
    )
