"""clipasso.objective.losses: augmentations and the CLIP loss, with tiny real open_clip encoders."""

from __future__ import annotations

import pytest
import torch

from clipasso.objective.losses import (
    CLIPassoLoss,
    LossConfigError,
    augment_grid,
    augment_pair,
    apply_augment,
    sample_augment_params,
)


def _target():
    t = torch.ones(3, 224, 224)
    t[:, 50:170, 70:150] = 0.15
    t[0, 90:130, 100:120] = 0.9
    return t


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_augment_params_follow_torchvision_ranges():
    p = sample_augment_params(200, (224, 224), torch.Generator().manual_seed(0))
    c = p.corners
    assert c[:, 0].min() >= 0 and c[:, 0].max() <= 56  # top-left moves inward by 0..56 px
    assert c[:, 2].min() >= 224 - 57 and c[:, 2].max() <= 223
    assert (p.crops[:, 2] == 200).all()  # 0.8 of the area, square
    assert p.crops[:, :2].min() >= 0 and p.crops[:, :2].max() <= 24


def test_identity_parameters_give_back_the_image():
    img = _target().unsqueeze(0)
    p = sample_augment_params(1, (224, 224), torch.Generator().manual_seed(0), distortion=0.0, crop_scale=1.0)
    out = apply_augment(img, p)
    assert torch.allclose(out, img, atol=1e-4)


def test_augment_pair_is_shared_deterministic_and_fills_black():
    t = _target()
    xs, ys = augment_pair(t, t, 4, torch.Generator().manual_seed(3))
    assert xs.shape == (5, 3, 224, 224)
    assert torch.equal(xs, ys)  # same parameters for sketch and target
    assert torch.equal(xs[0], t)  # item 0 is the clean view
    assert (xs[1:].amin(dim=(1, 2, 3)) == 0).all()  # black fill outside the warped image
    xs2, _ = augment_pair(t, t, 4, torch.Generator().manual_seed(3))
    assert torch.equal(xs, xs2)
    xs3, _ = augment_pair(t, t, 4, torch.Generator().manual_seed(4))
    assert not torch.equal(xs, xs3)


def test_augmentation_is_differentiable():
    t = _target().unsqueeze(0).requires_grad_()
    p = sample_augment_params(2, (224, 224), torch.Generator().manual_seed(0))
    apply_augment(t.expand(2, -1, -1, -1), p, augment_grid(p)).sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


@pytest.mark.parametrize("which", ["tiny_rn", "tiny_vit"])
def test_loss_zero_for_identical_and_grows_with_difference(which, request):
    enc = request.getfixturevalue(which)
    t = _target()
    loss = CLIPassoLoss(enc, t)
    a = t.clone()
    a[:, 50:170, 70:100] = 1.0  # part of the object erased
    b = torch.ones_like(t)  # nothing drawn
    out = loss.train_loss(torch.stack([t, a, b]), _gens(0, 1, 2))
    total = out["total"]
    assert total[0].abs() < 1e-5
    assert total[1] > 100 * max(total[0].abs().item(), 1e-7)
    assert total[2] > total[1]
    assert set(out) >= {"total", "semantic"} and any(k.startswith("geometric_") for k in out)
    with torch.no_grad():
        ev = loss.eval_loss(torch.stack([t, a, b]))["total"]
    assert ev[0].abs() < 1e-5 and ev[2] > ev[1] > ev[0]


def test_resnet_uses_layer2_layer3_and_semantic_weight(tiny_rn):
    t = _target()
    loss = CLIPassoLoss(tiny_rn, t)
    assert loss.layer_weights == {"layer2": 1.0, "layer3": 1.0} and loss.semantic_weight == 0.1
    sk = torch.ones(1, 3, 224, 224)
    out = loss.eval_loss(sk)
    expect = out["geometric_layer2"] + out["geometric_layer3"] + 0.1 * out["semantic"]
    assert torch.allclose(out["total"], expect)
    only3 = CLIPassoLoss(tiny_rn, t, layer_weights={"layer3": 2.0}, semantic_weight=0.0).eval_loss(sk)
    assert set(only3) == {"geometric_layer3", "total"}
    assert torch.allclose(only3["total"], 2 * out["geometric_layer3"], rtol=1e-5)


def test_target_features_carry_no_graph(tiny_rn):
    loss = CLIPassoLoss(tiny_rn, _target())
    feats, emb = loss._clean_target
    assert all(not f.requires_grad for f in feats.values()) and not emb.requires_grad


def test_gradients_reach_the_sketch_pixels(tiny_rn):
    loss = CLIPassoLoss(tiny_rn, _target())
    sk = torch.ones(2, 3, 224, 224, requires_grad=True)
    loss.train_loss(sk, _gens(0, 1))["total"].sum().backward()
    assert sk.grad is not None and torch.isfinite(sk.grad).all() and sk.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_rn.model.parameters())  # frozen encoder


def test_candidates_are_independent(tiny_rn):
    """A candidate's loss does not depend on the other candidates in the batch."""
    t = _target()
    loss = CLIPassoLoss(tiny_rn, t)
    a = t.clone()
    a[:, 60:100] = 1.0
    both = loss.train_loss(torch.stack([a, torch.ones_like(t)]), _gens(5, 6))["total"]
    alone = loss.train_loss(a.unsqueeze(0), _gens(5))["total"]
    assert torch.allclose(both[0], alone[0], rtol=1e-4, atol=1e-6)


def test_augmentation_pool_caches_target_and_stays_deterministic(tiny_rn):
    t = _target()
    loss = CLIPassoLoss(tiny_rn, t, num_augs=2, aug_pool=6)
    sk = torch.ones(2, 3, 224, 224)
    one = loss.train_loss(sk, _gens(0, 1))["total"]
    two = loss.train_loss(sk, _gens(0, 1))["total"]
    assert torch.equal(one, two)
    same = loss.train_loss(torch.stack([t, t]), _gens(0, 1))["total"]
    assert same.abs().max() < 1e-5  # pooled target views line up with the sketch views


def test_bad_settings_are_clear_errors(tiny_rn, tiny_vit):
    t = _target()
    with pytest.raises(LossConfigError, match="do not exist"):
        CLIPassoLoss(tiny_rn, t, layer_weights={"layer9": 1.0})
    with pytest.raises(LossConfigError, match="do not exist"):
        CLIPassoLoss(tiny_vit, t, layer_weights={"layer2": 1.0})
    with pytest.raises(LossConfigError, match="zero"):
        CLIPassoLoss(tiny_rn, t, layer_weights={}, semantic_weight=0.0)
    loss = CLIPassoLoss(tiny_rn, t)
    with pytest.raises(LossConfigError, match="differs"):
        loss.eval_loss(torch.ones(1, 3, 100, 100))
