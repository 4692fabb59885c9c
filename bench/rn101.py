"""The stand-in encoder the benchmarks measure with where no pretrained CLIP weights exist: open_clip's
RN101 with random weights whose BatchNorm statistics are calibrated on photos (an uncalibrated random
RN101 maps every picture to nearly the same features, so a loss comparison could not fail), and the
scikit-image photos it is calibrated and measured on. A pass costs the same whatever the weights are.

    from bench.rn101 import PICTURES, build_rn101, picture
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench import harness  # noqa: F401  (puts the checkout on sys.path)

PICTURES = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "camera")


def picture(name: str, size: int = 224) -> torch.Tensor:
    """[3,size,size] 0..1: the skimage photo, centre-cropped to a square and resized (bicubic, antialiased)."""
    import skimage.data

    img = torch.as_tensor(getattr(skimage.data, name)()).float() / 255.0
    if img.ndim == 2:
        img = img[..., None].expand(-1, -1, 3)
    img = img[..., :3].permute(2, 0, 1)
    h, w = img.shape[-2:]
    s = min(h, w)
    img = img[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    img = F.interpolate(img[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0]
    return img.clamp(0, 1)


def build_rn101(pictures, seed: int = 0, batch: int = 4, branch_scale: float = 0.2):
    """Random open_clip RN101 with non-trivial BatchNorm scales and statistics calibrated on ``pictures``.

    ``branch_scale`` multiplies the scale and shift of the last BatchNorm of every residual branch
    (``bn3``; open_clip initialises it to zero): 1.0 lets 33 residual blocks add up to features in the
    hundreds and a loss of ~1e4, 0.2 (the default, like the small last-BN scales of trained ResNets)
    keeps layer2/layer3 features around 0.5 and the loss in the tens."""
    import open_clip

    from clipasso.models import OPENAI_MEAN, OPENAI_STD, wrap_model

    torch.manual_seed(seed)
    model = open_clip.create_model("RN101", pretrained=None)
    g = torch.Generator().manual_seed(seed + 1)
    named = [(n, m) for n, m in model.visual.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bns = [m for _, m in named]
    with torch.no_grad():
        for n, m in named:
            f = branch_scale if n.endswith("bn3") else 1.0
            m.weight.copy_(f * (0.5 + torch.rand(m.weight.shape, generator=g)))
            m.bias.copy_(f * 0.1 * torch.randn(m.bias.shape, generator=g))
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
        mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        imgs = torch.stack(list(pictures))
        imgs = torch.cat([imgs, imgs.flip(-1)])  # and their mirror images
        x = (imgs - mean) / std
        model.visual.train()
        for i in range(0, x.shape[0], batch):
            model.visual(x[i : i + batch])
        model.visual.eval()
        for m in bns:
            m.momentum = 0.1
    return wrap_model(model, "RN101", source="random, BatchNorm calibrated on skimage photos")
