"""The background layer's loss in scene mode: the geometric term on one block of CLIP ViT-B/32 plus the semantic
term, checked against an independent computation with forward hooks on a randomly initialised ViT-B/32 of the
real architecture (open_clip, no weights downloaded)."""

import pytest
import torch
import torch.nn.functional as F

from clipasso.prepare.layers import split_layers
from clipasso.scene import layer_objective, layer_settings
from clipasso.settings import SketchSettings

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def vit_b32():
    from clipasso.models.encoder import wrap_model
    from clipasso.testing.tiny_models import perturb_norms

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    perturb_norms(model, 0)  # non-trivial LayerNorm scales, as in a trained network
    return wrap_model(model, "ViT-B-32", pretrained=None, source="random")


def _hooked_loss(enc, sketches, target, block, semantic_weight):
    """mean((block tokens(S) - block tokens(T))^2) over the patch tokens + w * (1 - cos) of the embeddings."""
    seen = {}
    visual = enc.model.visual
    hook = visual.transformer.resblocks[block].register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
    try:
        with torch.no_grad():

            def run(images):
                emb = visual(enc.normalize(images))
                tokens = seen["x"]
                if not getattr(visual.transformer, "batch_first", True):
                    tokens = tokens.transpose(0, 1)
                return tokens[:, 1:], emb  # the class token is not a patch

            ts, te = run(target[None])
            out = []
            for sk in sketches:
                ss, se = run(sk[None])
                geo = (ss - ts).square().mean()
                sem = 1 - F.cosine_similarity(se, te, dim=-1).mean()
                out.append(geo + semantic_weight * sem)
    finally:
        hook.remove()
    return torch.stack(out)


@pytest.mark.parametrize("fidelity,block", [("literal", 2), ("balanced", 8), (11, 11)])
def test_background_loss_equals_forward_hooks_on_vit_b32(vit_b32, fidelity, block):
    g = torch.Generator().manual_seed(block)
    picture = torch.rand(3, 224, 224, generator=g)
    mask = torch.zeros(224, 224)
    mask[60:170, 70:150] = 1
    layers = split_layers(picture, mask)
    s = SketchSettings.from_preset("paper", scene=True, scene_fidelity=fidelity, num_augs=0, mixed_precision="fp32")
    ls = layer_settings(s, "background")
    assert ls.layer_weights == {f"block{block}": 1.0} and ls.strokes == 64 and ls.text is None
    objective = layer_objective(s, "background", layers.background, "cpu", encoder=vit_b32)
    clip = objective.term("clip")
    assert clip.layer_weights == {f"block{block}": 1.0} and clip.semantic_weight == pytest.approx(0.1)
    sketches = torch.rand(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        ours = objective.eval_loss(sketches)
    expected = _hooked_loss(vit_b32, sketches, layers.background, block, 0.1)
    assert torch.allclose(ours["total"], expected, rtol=1e-4, atol=1e-6), (ours["total"], expected)
    assert set(ours) >= {f"geometric_block{block}", "semantic", "total"}


def test_a_block_the_vit_lacks_is_a_clear_error(tiny_vit):
    picture = torch.rand(3, 224, 224)
    layers = split_layers(picture, None)
    s = SketchSettings.from_preset("fast", scene=True, scene_fidelity="balanced")
    from clipasso.errors import PipelineError

    with pytest.raises(PipelineError, match=r"block 8 does not exist .* blocks 0-2; give --scene-fidelity"):
        layer_objective(s, "background", layers.background, "cpu", encoder=tiny_vit)


def test_foreground_keeps_the_sketch_loss_and_background_takes_the_saliency_vit():
    s = SketchSettings.from_preset(
        "fast", scene=True, strokes=12, background_strokes=40, text="a cat", saliency_weights="/x/vit.safetensors"
    )
    fg, bg = layer_settings(s, "foreground"), layer_settings(s, "background")
    assert (fg.strokes, fg.clip_model, fg.text, fg.layer_weights, fg.scene) == (12, "RN101", "a cat", None, False)
    assert (bg.strokes, bg.clip_model, bg.clip_weights, bg.text) == (40, "ViT-B-32", "/x/vit.safetensors", None)
    timm = layer_settings(s.replace(saliency="timm-vit", saliency_model="vit_small_patch8_224.dino"), "background")
    assert (timm.clip_model, timm.clip_weights) == ("ViT-B-32", None)  # a timm saliency model is no CLIP loss
    pruned = layer_settings(s.replace(auto_strokes=0.9), "background")
    assert (pruned.max_strokes, pruned.optimized_strokes) == (40, 40)
