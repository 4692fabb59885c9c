"""The loss's augmentation is the original CLIPasso's: torchvision's tensor ``perspective`` (fill 0)
then ``resized_crop`` (bilinear, antialias=True), checked view by view and through the whole loss
against a direct computation that uses torchvision's functional ops and forward hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from clipasso.objective.losses import CLIPassoLoss, apply_augment, augment_grid, augment_pair, sample_augment_params

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _picture(size: int, seed: int) -> torch.Tensor:
    """[3,S,S] 0..1: smooth colour noise plus hard-edged boxes and thin dark lines (sketch-like)."""
    g = torch.Generator().manual_seed(seed)
    img = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(size, size), mode="bicubic", align_corners=False)[
        0
    ].clamp(0, 1)
    for _ in range(4):
        top, left = (int(v) for v in torch.randint(0, size - size // 4, (2,), generator=g))
        img[:, top : top + size // 5, left : left + size // 6] = torch.rand(3, 1, 1, generator=g)
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    for _ in range(3):  # anti-aliased 3 px lines, black ink
        a, b, c = torch.randn(3, generator=g)
        d = (a * xx + b * yy - c * size * 0.3 - (a + b) * size / 2).abs() / (a * a + b * b).sqrt()
        img = img * (d - 1.0).clamp(0, 1)
    return img


def _tv_view(img: torch.Tensor, corners, crop, size) -> torch.Tensor:
    """One augmented view computed with torchvision's functional ops."""
    h, w = size
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    end = [[int(v) for v in c] for c in corners.tolist()]
    x = TF.perspective(img, start, end, InterpolationMode.BILINEAR, fill=[0.0] * img.shape[-3])
    top, left, side = (int(v) for v in crop.tolist())
    return TF.resized_crop(x, top, left, side, side, [h, w], InterpolationMode.BILINEAR, antialias=True)


def _tv_views(img: torch.Tensor, params) -> torch.Tensor:
    return torch.stack([_tv_view(img, params.corners[i], params.crops[i], params.size) for i in range(len(params))])


@pytest.mark.parametrize("size", [224, 160, 97])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_views_equal_torchvision_perspective_then_resized_crop(size, seed):
    img = _picture(size, seed)
    params = sample_augment_params(5, (size, size), torch.Generator().manual_seed(100 + seed))
    ours = apply_augment(img.expand(5, -1, -1, -1), params)
    ref = _tv_views(img, params)
    assert ours.shape == ref.shape == (5, 3, size, size)
    assert (ours - ref).abs().max() <= 1e-4
    # the precomputed grid gives the same, and so does a subset of it (the fast preset's pool)
    grid = augment_grid(params)
    assert torch.equal(apply_augment(img.expand(5, -1, -1, -1), params, grid), ours)
    idx = torch.tensor([3, 0])
    assert torch.equal(apply_augment(img.expand(2, -1, -1, -1), None, grid.index(idx)), ours[idx])


def test_views_equal_torchvision_for_extreme_corners_and_crops():
    size = 224
    img = _picture(size, 7)
    params = sample_augment_params(4, (size, size), torch.Generator().manual_seed(0))
    corners = torch.tensor(
        [
            [[56, 56], [167, 56], [167, 167], [56, 167]],  # every corner moved the most
            [[0, 0], [223, 0], [223, 223], [0, 223]],  # no distortion
            [[56, 0], [223, 56], [167, 223], [0, 167]],
            [[0, 56], [167, 0], [223, 167], [56, 223]],
        ],
        dtype=torch.float32,
    )
    crops = torch.tensor([[0, 0, 200], [24, 24, 200], [0, 24, 200], [24, 0, 200]])
    params = type(params)(corners, crops, (size, size))
    ours = apply_augment(img.expand(4, -1, -1, -1), params)
    assert (ours - _tv_views(img, params)).abs().max() <= 1e-4


def test_augment_pair_views_equal_torchvision():
    sk, tg = _picture(224, 3), _picture(224, 4)
    xs, ys = augment_pair(sk, tg, 3, torch.Generator().manual_seed(9))
    params = sample_augment_params(3, (224, 224), torch.Generator().manual_seed(9))
    assert torch.equal(xs[0], sk) and torch.equal(ys[0], tg)
    assert (xs[1:] - _tv_views(sk, params)).abs().max() <= 1e-4
    assert (ys[1:] - _tv_views(tg, params)).abs().max() <= 1e-4


# --------------------------------------------------------------------------- through the loss


def _clone(g: torch.Generator) -> torch.Generator:
    c = torch.Generator()
    c.set_state(g.get_state())
    return c


def _direct_loss(enc, sketch_views: torch.Tensor, target_views: torch.Tensor) -> torch.Tensor:
    """sum of the layer2 / layer3 MSEs + 0.1 * mean(1 - cos) of the embeddings, from forward hooks."""
    visual = enc.visual
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)

    def run(x):
        got = {}
        hooks = [
            getattr(visual, n).register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o))
            for n in ("layer2", "layer3")
        ]
        try:
            emb = visual((x - mean) / std)
        finally:
            for h in hooks:
                h.remove()
        return got["layer2"], got["layer3"], emb

    s2, s3, se = run(sketch_views)
    with torch.no_grad():
        t2, t3, te = run(target_views)
    return F.mse_loss(s2, t2) + F.mse_loss(s3, t3) + 0.1 * (1 - F.cosine_similarity(se, te, dim=-1)).mean()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


@pytest.mark.parametrize("pool", [0, 6])
def test_train_loss_and_gradient_equal_a_direct_torchvision_computation(tiny_rn, pool):
    target = _picture(224, 11)
    sketches = torch.stack([_picture(224, 12), _picture(224, 13)])
    num_augs = 2 if pool else 4
    loss = CLIPassoLoss(tiny_rn, target, num_augs=num_augs, aug_pool=pool, pool_seed=5)
    assert loss.layer_weights == {"layer2": 1.0, "layer3": 1.0} and loss.semantic_weight == 0.1
    gens = [torch.Generator().manual_seed(s) for s in (21, 22)]
    copies = [_clone(g) for g in gens]

    sk = sketches.clone().requires_grad_()
    out = loss.train_loss(sk, gens)["total"]
    out.sum().backward()

    pool_params = sample_augment_params(pool, (224, 224), torch.Generator().manual_seed(5)) if pool else None
    for b, g in enumerate(copies):
        if pool:
            picks = torch.randperm(pool, generator=g)[:num_augs]
            params = pool_params.index(picks)
        else:
            params = sample_augment_params(num_augs, (224, 224), g)
        s = sketches[b].clone().requires_grad_()
        sv = torch.cat([s[None], _tv_views(s, params)])
        tv = torch.cat([target[None], _tv_views(target, params)])
        ref = _direct_loss(tiny_rn, sv, tv)
        ref.backward()
        lo, lr = float(out[b].detach()), float(ref.detach())
        assert abs(lo - lr) <= 1e-5 * abs(lr), (lo, lr)
        assert _cos(sk.grad[b], s.grad) > 0.9999
