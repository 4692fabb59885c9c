"""Saliency maps. CLIP ViTs are tiny random open_clip models written to files and loaded through
`clipasso.models.load_clip` (tests/tiny_models.py); the maths is checked against independent code."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from clipasso.place.init import initialize_strokes
from clipasso.models import load_clip, wrap_model
from clipasso.place.saliency import (
    SaliencyError,
    clip_attention_map,
    clip_relevancy_map,
    load_timm_vit,
    position_embedding,
    saliency_map,
    timm_attention_map,
    vit_forward_with_attention,
)
from clipasso.prepare.xdog import xdog_edges
from clipasso.settings import SettingsError

torch.set_num_threads(2)


def dark_square(size=224, lo=64, hi=160):
    img = torch.ones(3, size, size)
    img[:, lo:hi, lo:hi] = 0.0
    return img


def normalised(enc, img):
    mean = torch.tensor(enc.mean).view(1, 3, 1, 1)
    std = torch.tensor(enc.std).view(1, 3, 1, 1)
    return (img.unsqueeze(0) - mean) / std


def upsample_minmax(grid_map, h, w):
    up = F.interpolate(grid_map[None, None], size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    return (up - up.min()) / (up.max() - up.min())


# ---------------------------------------------------------------------------- independent reference
def reference_vit(visual, x, override=None):
    """A second, einsum-based ViT forward (native size only). ``override=(block, A)`` replaces that
    block's attention probabilities, to take gradients with respect to them."""
    p = visual.conv1.weight.shape[-1]
    b = x.shape[0]
    patches = x.unfold(2, p, p).unfold(3, p, p)  # B, 3, gh, gw, p, p
    gh, gw = patches.shape[2:4]
    tok = torch.einsum("bchwij,dcij->bhwd", patches, visual.conv1.weight).reshape(b, gh * gw, -1)
    tok = torch.cat([visual.class_embedding.expand(b, 1, -1), tok], 1) + visual.positional_embedding
    tok = visual.ln_pre(tok)
    probs = []
    for i, blk in enumerate(visual.transformer.resblocks):
        heads, d = blk.attn.num_heads, tok.shape[-1]
        qkv = torch.einsum("bld,ed->ble", blk.ln_1(tok), blk.attn.in_proj_weight) + blk.attn.in_proj_bias
        q, k, v = (t.reshape(b, -1, heads, d // heads) for t in qkv.split(d, -1))
        a = torch.softmax(torch.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(d // heads), -1)
        if override is not None and override[0] == i:
            a = override[1]
        probs.append(a)
        o = torch.einsum("bhqk,bkhc->bqhc", a, v).reshape(b, -1, d)
        tok = tok + o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        tok = tok + blk.mlp(blk.ln_2(tok))
    return visual.ln_post(tok[:, 0]) @ visual.proj, probs, (gh, gw)


# ---------------------------------------------------------------------------- forward and attention
def test_explicit_forward_reproduces_open_clip(tiny_vit):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    emb, probs = vit_forward_with_attention(tiny_vit.visual, x)
    with torch.no_grad():
        assert torch.allclose(emb, tiny_vit.visual(x), atol=1e-5)
        assert torch.allclose(emb, tiny_vit.model.encode_image(x), atol=1e-5)
    assert len(probs) == len(tiny_vit.visual.transformer.resblocks)
    assert tuple(probs[0].shape) == (2, tiny_vit.visual.transformer.resblocks[0].attn.num_heads, 50, 50)
    assert torch.allclose(probs[0].sum(-1), torch.ones(2, probs[0].shape[1], 50), atol=1e-5)


def test_attention_probabilities_match_torch_multihead_attention(tiny_vit):
    """Block inputs captured from open_clip's own forward; weights from nn.MultiheadAttention itself."""
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    inputs = []
    hooks = [
        blk.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
        for blk in tiny_vit.visual.transformer.resblocks
    ]
    try:
        with torch.no_grad():
            tiny_vit.visual(x)
    finally:
        for h in hooks:
            h.remove()
    _, probs = vit_forward_with_attention(tiny_vit.visual, x)
    for blk, inp, mine in zip(tiny_vit.visual.transformer.resblocks, inputs, probs):
        h = blk.ln_1(inp)
        with torch.no_grad():
            ref = blk.attn(h, h, h, need_weights=True, average_attn_weights=False)[1]
        assert torch.allclose(mine, ref, atol=1e-6)


def test_clip_attention_map_is_the_block_and_head_mean_of_cls_attention(tiny_vit):
    img = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, probs, grid = reference_vit(tiny_vit.visual, normalised(tiny_vit, img))
    cls = torch.stack([a.mean(1)[0, 0, 1:] for a in probs]).mean(0).reshape(grid)
    expected = upsample_minmax(cls, 224, 224)
    got = saliency_map(img, encoder=tiny_vit)
    assert got.shape == (224, 224) and got.dtype == torch.float32
    assert float(got.min()) == 0.0 and float(got.max()) == pytest.approx(1.0)
    assert torch.allclose(got, expected, atol=1e-4)


def test_relevancy_matches_gradients_taken_by_an_independent_forward(tiny_vit):
    img = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(3))
    x = normalised(tiny_vit, img)
    with torch.no_grad():
        target, probs, grid = reference_vit(tiny_vit.visual, x)
    rel = torch.eye(probs[0].shape[-1])
    for i, a in enumerate(probs):
        leaf = a.clone().requires_grad_(True)
        with torch.enable_grad():
            emb, _, _ = reference_vit(tiny_vit.visual, x, override=(i, leaf))
            (grad,) = torch.autograd.grad((emb * target).sum(), leaf)
        assert float(grad.abs().max()) > 0  # gradients reach every block's attention
        cam = (grad * a).clamp(min=0).mean(1)[0]
        rel = rel + cam @ rel
    expected = upsample_minmax(rel[0, 1:].reshape(grid), 224, 224)
    got = saliency_map(img, method="clip-relevancy", encoder=tiny_vit)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, saliency_map(img, encoder=tiny_vit), atol=1e-2)


def test_relevancy_with_a_text_embedding_changes_the_map(tiny_vit):
    img = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(4))
    t1 = torch.randn(32, generator=torch.Generator().manual_seed(5))
    a = clip_relevancy_map(img, tiny_vit, text=t1)
    b = clip_relevancy_map(img, tiny_vit, text=-t1)
    assert a.shape == (224, 224) and float(a.max()) == pytest.approx(1.0)
    assert not torch.allclose(a, b, atol=1e-2)
    with pytest.raises(SaliencyError, match="same CLIP model"):
        clip_relevancy_map(img, tiny_vit, text=torch.randn(7))
    # a prompt goes through open_clip's tokenizer and the model's own text tower
    c = clip_relevancy_map(img, tiny_vit, text="a photo of a cat")
    assert c.shape == (224, 224) and not torch.allclose(c, clip_relevancy_map(img, tiny_vit), atol=1e-3)


def test_relevancy_works_under_inference_mode(tiny_vit):
    img = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(6))
    plain = clip_relevancy_map(img, tiny_vit)
    with torch.inference_mode():
        inside = clip_relevancy_map(img.clone(), tiny_vit)
    assert torch.allclose(plain, inside, atol=1e-5)


# ---------------------------------------------------------------------------- sizes and patch sizes
def test_interpolated_position_embeddings_match_a_model_built_at_that_size(tiny_vit, tiny_models):
    import open_clip

    cfg = json.loads(open(tiny_models["vit_config"]).read())
    cfg["vision_cfg"]["image_size"] = 448
    big = open_clip.CLIP(**cfg).eval()
    state = dict(tiny_vit.model.state_dict())
    state["visual.positional_embedding"] = position_embedding(tiny_vit.visual, (14, 14)).detach()
    big.load_state_dict(state)
    x = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(7))
    emb, probs = vit_forward_with_attention(tiny_vit.visual, x)
    with torch.no_grad():
        assert torch.allclose(emb, big.visual(x), atol=1e-5)
    assert probs[0].shape[-1] == 14 * 14 + 1
    assert position_embedding(tiny_vit.visual, (7, 7)) is tiny_vit.visual.positional_embedding


def test_other_patch_size_input_size_and_aspect(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 96, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    (tmp_path / "tiny-p16.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "tiny-p16.safetensors"))
    enc = load_clip("tiny-p16", models_dir=str(tmp_path), allow_download=False)
    assert enc.is_vit and enc.patch_size == 16 and enc.image_size == 96
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(vit_forward_with_attention(enc.visual, x)[0], enc.visual(x), atol=1e-5)
    for shape, size in (((96, 96), None), ((60, 150), None), ((200, 120), 160), ((7, 9), 32)):
        img = torch.rand(3, *shape)
        for method in ("clip-attention", "clip-relevancy"):
            m = saliency_map(img, method=method, encoder=enc, size=size)
            assert tuple(m.shape) == shape
            assert float(m.min()) >= 0 and float(m.max()) <= 1 + 1e-6


# ---------------------------------------------------------------------------- where the math guarantees the peak
@pytest.fixture(scope="module")
def dark_seeking_vit(tiny_vit):
    """The tiny ViT with weights set so that the CLS query provably prefers dark patches.

    Patch tokens become +-u after LayerNorm (dark: +u, white: -u; position embeddings zero), the
    CLS token is +u, q = k = identity, and attention/MLP outputs are zeroed so every block sees the
    same tokens: the CLS logit is +|u|^2 for dark patches and -|u|^2 for white ones in every head.
    """
    model = copy.deepcopy(tiny_vit.model)
    v = model.visual
    with torch.no_grad():
        p = v.conv1.weight.shape[-1]
        v.conv1.weight.zero_()
        v.conv1.weight[0] = -1.0 / (3 * p * p)
        v.positional_embedding.zero_()
        v.class_embedding.zero_()
        v.class_embedding[0] = 1.0
        for ln in [v.ln_pre] + [blk.ln_1 for blk in v.transformer.resblocks]:
            ln.weight.fill_(1.0)
            ln.bias.zero_()
        for blk in v.transformer.resblocks:
            d = blk.attn.embed_dim
            blk.attn.in_proj_weight[: 2 * d] = torch.cat([torch.eye(d), torch.eye(d)]) * 2.0
            blk.attn.in_proj_bias.zero_()
            blk.attn.out_proj.weight.zero_()
            blk.attn.out_proj.bias.zero_()
            blk.mlp.c_proj.weight.zero_()
            blk.mlp.c_proj.bias.zero_()
    return wrap_model(model, name="dark-seeking", mean=tiny_vit.mean, std=tiny_vit.std)


def test_attention_peaks_on_the_dark_object(dark_seeking_vit):
    img = dark_square()
    m = clip_attention_map(img, dark_seeking_vit)
    row, col = divmod(int(torch.argmax(m)), 224)
    assert 64 <= row < 160 and 64 <= col < 160
    assert float(m[72:152, 72:152].min()) > float(m[:40, :].max())
    assert float(m[72:152, 72:152].mean()) > 0.75 and float(m[:40, :40].mean()) < 0.1


def test_saliency_xdog_and_init_put_every_start_on_the_object(dark_seeking_vit):
    img = dark_square()
    sal = saliency_map(img, encoder=dark_seeking_vit)
    edges = xdog_edges(img)
    s = initialize_strokes((224, 224), 16, (0, 1000, 2000), saliency=sal, edges=edges)
    st = s.points[:, :, 0]
    assert bool(((st >= 61) & (st <= 163)).all())


# ---------------------------------------------------------------------------- timm ViT (DINO-style)
@pytest.fixture(scope="module")
def tiny_timm(tmp_path_factory):
    import timm

    kw = dict(depth=2, embed_dim=48, num_heads=3, img_size=64)
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch8_224.dino", pretrained=False, num_classes=0, **kw)
    path = tmp_path_factory.mktemp("timm") / "dino_tiny.pth"
    torch.save(model.state_dict(), path)
    return str(path), kw, model


def test_timm_vit_loads_from_a_local_file(tiny_timm):
    path, kw, original = tiny_timm
    model = load_timm_vit("vit_small_patch8_224.dino", weights=path, **kw)
    for (k, a), b in zip(model.state_dict().items(), original.state_dict().values()):
        assert torch.equal(a, b), k
    assert not any(p.requires_grad for p in model.parameters())


def test_timm_attention_is_the_last_block_cls_row(tiny_timm):
    path, kw, _ = tiny_timm
    model = load_timm_vit("vit_small_patch8_224.dino", weights=path, **kw)
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(8))
    x = (img.unsqueeze(0) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    seen = []
    hook = model.blocks[-1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model.forward_features(x)
    hook.remove()
    blk = model.blocks[-1]
    h = blk.norm1(seen[0])
    qkv = blk.attn.qkv(h).reshape(1, h.shape[1], 3, 3, 16).permute(2, 0, 3, 1, 4)
    a = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / 4.0, -1)  # head_dim 16
    expected = upsample_minmax(a.mean(1)[0, 0, 1:].reshape(8, 8), 64, 64)
    got = saliency_map(img, method="timm-vit", encoder=model)
    assert torch.allclose(got, expected, atol=1e-4)
    other = timm_attention_map(torch.rand(3, 40, 100), model, size=96)  # any size, any aspect
    assert tuple(other.shape) == (40, 100) and float(other.max()) == pytest.approx(1.0)


def test_timm_errors(tiny_timm, tmp_path):
    path, kw, _ = tiny_timm
    with pytest.raises(FileNotFoundError, match="not found"):
        load_timm_vit("vit_small_patch8_224.dino", weights=tmp_path / "missing.pth", **kw)
    with pytest.raises(FileNotFoundError, match="weights"):
        load_timm_vit("vit_small_patch8_224.dino", **kw)
    with pytest.raises(SaliencyError, match="could not build"):
        load_timm_vit("vit_small_patch8_224.dino", weights=path, depth=3, embed_dim=64, num_heads=2, img_size=64)
    with pytest.raises(FileNotFoundError, match="no weights file for timm model 'vit_small_patch8_224.dino'"):
        saliency_map(dark_square(32), method="timm-vit", allow_download=False)
    with pytest.raises(SaliencyError, match="not a timm VisionTransformer"):
        saliency_map(dark_square(32), method="timm-vit", encoder=torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------- mask method and errors
def test_mask_method_and_mask_restriction(tiny_vit):
    mask = torch.zeros(224, 224)
    mask[50:120, 30:200] = 1
    m = saliency_map(dark_square(), method="mask", mask=mask)
    assert torch.equal(m, mask)
    small = saliency_map(dark_square(), method="mask", mask=mask[::2, ::2])  # resized to the image
    assert small.shape == (224, 224)
    r = saliency_map(torch.rand(3, 224, 224), encoder=tiny_vit, mask=mask)
    assert float(r[mask == 0].max()) == 0 and float(r.max()) == pytest.approx(1.0)


def test_bad_inputs(tiny_rn, tiny_vit):
    img = dark_square(64)
    with pytest.raises(SettingsError, match="saliency method must be one of clip-attention, .*; got 'dino'"):
        saliency_map(img, method="dino", encoder=tiny_vit)
    with pytest.raises(SaliencyError, match="'none' makes no map"):
        saliency_map(img, method="none")
    with pytest.raises(SaliencyError, match="needs the matting mask"):
        saliency_map(img, method="mask")
    with pytest.raises(SaliencyError, match="needs a CLIP ViT"):
        saliency_map(img, encoder=tiny_rn)
    with pytest.raises(SaliencyError, match="size must be a positive"):
        saliency_map(img, encoder=tiny_vit, size=0)
    with pytest.raises(SaliencyError, match="smaller than one ViT patch"):
        saliency_map(img, encoder=tiny_vit, size=16)
    with pytest.raises(SaliencyError, match="0..1"):
        saliency_map(img, method="mask", mask=torch.full((64, 64), 3.0))
    with pytest.raises(ValueError, match="NaN"):
        saliency_map(torch.full((3, 8, 8), float("nan")), encoder=tiny_vit)
