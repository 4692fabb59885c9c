"""Text guidance: a prompt's CLIP text embedding as an extra semantic term (tiny real models)."""

from __future__ import annotations

import pytest
import torch

from clipasso.objective.losses import CLIPassoLoss, LossConfigError
from clipasso.optimize import OptimizeConfig, OptimizeError, optimize
from clipasso.strokes import Strokes
from clipasso.objective.text import TextGuidanceError, encode_text
from clipasso.settings import SettingsError


def _target(size=224):
    t = torch.ones(3, size, size)
    t[:, 60:160, 60:64] = 0.0
    t[:, 60:64, 60:160] = 0.0
    t[0, 100:140, 100:140] = 0.9
    t[1:, 100:140, 100:140] = 0.2
    return t


def _strokes(seed=0, n=6, size=224, b=1):
    g = torch.Generator().manual_seed(seed)
    start = 40 + torch.rand(b, n, 1, 2, generator=g) * (size - 80)
    pts = start + torch.randn(b, n, 4, 2, generator=g) * 15
    return Strokes.from_points(pts, (size, size), width=1.5)


def _render(strokes):
    from clipasso.render.raster import render

    return render(strokes).image


def test_prompt_embedding_from_the_loss_models_text_tower(tiny_rn, tiny_vit):
    for enc in (tiny_rn, tiny_vit):
        a = encode_text(enc, "a cat, side view")
        b = encode_text(enc, "a red bicycle")
        assert a.shape == (32,) and torch.isfinite(a).all()
        assert torch.allclose(a, encode_text(enc, "  a cat,   side view "))  # whitespace does not matter
        assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) < 0.999


def test_text_term_adds_to_the_loss_and_depends_on_the_prompt(tiny_rn):
    target = _target()
    image = _render(_strokes())
    base = CLIPassoLoss(tiny_rn, target, num_augs=0)
    cat = CLIPassoLoss(tiny_rn, target, num_augs=0, text_embedding=encode_text(tiny_rn, "a cat"), text_weight=0.7)
    bike = CLIPassoLoss(
        tiny_rn, target, num_augs=0, text_embedding=encode_text(tiny_rn, "a red bicycle"), text_weight=0.7
    )
    with torch.no_grad():
        lb, lc, lk = base.eval_loss(image), cat.eval_loss(image), bike.eval_loss(image)
    assert "text" not in lb and "text" in lc
    assert torch.allclose(lc["total"], lb["total"] + 0.7 * lc["text"], atol=1e-6)
    # it is 1 - cos(sketch embedding, prompt embedding), in [0, 2], different per prompt
    assert 0 <= float(lc["text"]) <= 2 and abs(float(lc["text"]) - float(lk["text"])) > 1e-4


def test_text_term_is_averaged_over_the_augmented_views(tiny_rn):
    target = _target()
    image = _render(_strokes(b=2))
    emb = encode_text(tiny_rn, "a cat")
    loss = CLIPassoLoss(tiny_rn, target, num_augs=3, text_embedding=emb, text_weight=1.0)
    with torch.no_grad():
        trained = loss.train_loss(image, [torch.Generator().manual_seed(s) for s in (0, 1)])
        clean = loss.eval_loss(image)
    assert trained["text"].shape == (2,)
    # with augmented views the mean differs from the clean view's value
    assert not torch.allclose(trained["text"], clean["text"])


def test_text_gradient_changes_direction_and_lowers_the_text_term(tiny_rn):
    target = _target()
    strokes = _strokes()
    emb = encode_text(tiny_rn, "a cat, side view")
    base = CLIPassoLoss(tiny_rn, target, num_augs=0)
    guided = CLIPassoLoss(tiny_rn, target, num_augs=0, text_embedding=emb, text_weight=1.0)
    text_only = CLIPassoLoss(
        tiny_rn, target, layer_weights={}, semantic_weight=0.0, num_augs=0, text_embedding=emb, text_weight=1.0
    )
    from clipasso.render.raster import rasterize

    def grad(loss):
        pts = strokes.points.clone().requires_grad_(True)
        img = rasterize(pts, strokes.widths, strokes.colors, 224, 224)[0]
        loss.eval_loss(img)["total"].sum().backward()
        return pts.grad.flatten()

    g0, g1, gt = grad(base), grad(guided), grad(text_only)
    assert gt.abs().sum() > 0
    cos = float(torch.nn.functional.cosine_similarity(g0, g1, dim=0))
    assert cos < 0.9999, "the text term must change the gradient's direction"
    # a small step against the text-only gradient lowers the text term
    with torch.no_grad():
        before = text_only.eval_loss(rasterize(strokes.points, strokes.widths, strokes.colors, 224, 224)[0])
        moved = strokes.points - 0.5 * gt.view_as(strokes.points) / gt.abs().max()
        after = text_only.eval_loss(rasterize(moved, strokes.widths, strokes.colors, 224, 224)[0])
    assert float(after["text"]) < float(before["text"])


def test_optimising_with_a_prompt_moves_the_sketch_toward_it(tiny_rn):
    target = _target()
    start = _strokes(seed=3)
    emb = encode_text(tiny_rn, "a cat, side view")
    probe = CLIPassoLoss(
        tiny_rn, target, layer_weights={}, semantic_weight=0.0, num_augs=0, text_embedding=emb, text_weight=1.0
    )
    cfg = dict(iterations=8, num_augs=0, eval_interval=4, lr=1.0)
    plain = optimize(start, target, tiny_rn, OptimizeConfig(**cfg))
    guided = optimize(start, target, tiny_rn, OptimizeConfig(text="a cat, side view", text_weight=20.0, **cfg))
    with torch.no_grad():
        t_plain = float(probe.eval_loss(_render(plain.final))["text"])
        t_guided = float(probe.eval_loss(_render(guided.final))["text"])
        t_start = float(probe.eval_loss(_render(start))["text"])
    assert t_guided < t_plain and t_guided < t_start
    assert not torch.allclose(plain.final.points, guided.final.points)
    # the reported loss includes the text term (it is what best-of-N compares)
    full = CLIPassoLoss(tiny_rn, target, num_augs=0, text_embedding=emb, text_weight=20.0)
    with torch.no_grad():
        expect = full.eval_loss(_render(guided.strokes))["total"]
    assert torch.allclose(guided.strokes.losses, expect, rtol=1e-4, atol=1e-6)


def test_no_prompt_or_zero_weight_gives_the_old_loss(tiny_rn):
    target = _target()
    start = _strokes(seed=1)
    cfg = dict(iterations=2, num_augs=0, eval_interval=1)
    a = optimize(start, target, tiny_rn, OptimizeConfig(**cfg))
    b = optimize(start, target, tiny_rn, OptimizeConfig(text="", **cfg))
    c = optimize(start, target, tiny_rn, OptimizeConfig(text="a cat", text_weight=0.0, **cfg))
    assert torch.equal(a.final.points, b.final.points) and torch.equal(a.final.points, c.final.points)


def test_visual_only_model_gives_a_clear_error(tiny_rn):
    from clipasso.models import wrap_model

    class VisualOnly(torch.nn.Module):
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

    enc = wrap_model(VisualOnly(tiny_rn.model.visual), name="visual-only")
    with pytest.raises(TextGuidanceError, match="has no text tower"):
        encode_text(enc, "a cat")
    with pytest.raises(OptimizeError, match="has no text tower"):
        optimize(_strokes(), _target(), enc, OptimizeConfig(iterations=1, num_augs=0, text="a cat"))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(text=3), "text must be a string"),
        (dict(text="a cat", text_weight=-1.0), "text_weight must be 0 or more"),
        (dict(text="a cat", text_weight=float("nan")), "text_weight must be a finite number"),
        (dict(text="a cat", loss="trace"), "needs the CLIP loss"),
    ],
)
def test_bad_text_settings(kw, match):
    with pytest.raises(SettingsError, match=match):
        OptimizeConfig(**kw).validate()


def test_bad_text_inputs(tiny_rn):
    with pytest.raises(TextGuidanceError, match="empty"):
        encode_text(tiny_rn, "   ")
    with pytest.raises(LossConfigError, match="needs a text embedding"):
        CLIPassoLoss(tiny_rn, _target(), text_weight=1.0)
    loss = CLIPassoLoss(tiny_rn, _target(), num_augs=0, text_embedding=torch.ones(7), text_weight=1.0)
    with pytest.raises(LossConfigError, match="7 dimensions"):
        loss.eval_loss(_render(_strokes()))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--text", "  "], "--text is empty"),
        (["--text", "a cat", "--text-weight", "-1"], "--text-weight must be 0 or more"),
    ],
)
def test_cli_rejects_bad_text_flags(tmp_path, capsys, flags, message):
    from clipasso.cli import main

    with pytest.raises(SystemExit):
        main(["sketch", "-o", str(tmp_path / "t.svg")] + flags)
    assert message in capsys.readouterr().err
