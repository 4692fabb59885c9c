"""CLIPasso's loss: CLIP feature distances between a sketch and its target under shared augmentations.

For every candidate sketch the batch holds 1 clean view and ``num_augs`` augmented views. An
augmented view is what the original's ``RandomPerspective(0.5, p=1, fill=0)`` then
``RandomResizedCrop(224, scale=(0.8, 0.8), ratio=(1, 1))`` make of a tensor, resampled twice with
torchvision's conventions: the perspective warp (corners moved inward by up to ``distortion`` x half
the side; pixel centres at +0.5, ``grid_sample(align_corners=False)``, black fill blended in with the
warped all-ones mask), then a plain square slice of ``crop_scale`` of the area resized back bilinearly
(``align_corners=False``, source indices clamped to the box). The sketch and the target get the very
same parameters. The views equal torchvision's functional ops to float32 rounding
(tests/engine/objective/test_augment_parity.py), are batched over views, differentiable in the images and exactly
reproducible from a ``torch.Generator``; the sampling grids (`augment_grid`) are built once per
parameter set, which the ``aug_pool`` mode reuses every step.

    loss = sum_l w_l * mean((f_l(aug(S)) - f_l(aug(I)))^2) + semantic_weight * mean(1 - cos(e(aug(S)), e(aug(I))))

ResNet encoders: f_l are the outputs of the stages named in ``layer_weights`` (default ``layer2``
and ``layer3``, weight 1 each; names ``stem``, ``layer1`` .. ``layer4``); ``e`` is the attention-pool
embedding (not normalised). ViT encoders: f_l are the patch tokens after block ``blockN`` (0-based);
``e`` is the projected pooled token. Target features never carry a graph. Losses are returned per
candidate so that B candidates optimised in one batch behave like B separate runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from ..device import autocast
from ..errors import ClipassoError
from ..settings import ObjectiveSettings, SettingsError, field_option

if TYPE_CHECKING:  # pragma: no cover
    from ..models.compiled import CompiledStep

RESNET_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
DEFAULT_RESNET_WEIGHTS = {"layer2": 1.0, "layer3": 1.0}
DEFAULT_SEMANTIC_WEIGHT = ObjectiveSettings.semantic_weight


class LossConfigError(ClipassoError, ValueError):
    """A loss setting that cannot work with the chosen encoder."""


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentParams:
    """Per view: where the 4 image corners go (perspective) and the crop box, in pixels."""

    corners: torch.Tensor  # [N, 4, 2] end points (x, y) of the input corners TL, TR, BR, BL
    crops: torch.Tensor  # [N, 3] (top, left, side)
    size: tuple  # (H, W) of the images they apply to

    def __len__(self) -> int:
        return self.corners.shape[0]

    def index(self, idx: torch.Tensor) -> "AugmentParams":
        return AugmentParams(self.corners[idx], self.crops[idx], self.size)

    @staticmethod
    def cat(items: Sequence["AugmentParams"]) -> "AugmentParams":
        return AugmentParams(torch.cat([p.corners for p in items]), torch.cat([p.crops for p in items]), items[0].size)


def sample_augment_params(
    n: int,
    size,
    generator: Optional[torch.Generator] = None,
    distortion: float = ObjectiveSettings.distortion,
    crop_scale: float = ObjectiveSettings.crop_scale,
) -> AugmentParams:
    """``n`` random (perspective, crop) parameter sets, drawn like torchvision's transforms."""
    h, w = int(size[0]), int(size[1])
    dx, dy = int(distortion * (w // 2)), int(distortion * (h // 2))

    def rint(lo, hi):  # integers in [lo, hi)
        return torch.randint(lo, hi, (n,), generator=generator)

    tl = torch.stack([rint(0, dx + 1), rint(0, dy + 1)], -1)
    tr = torch.stack([rint(w - dx - 1, w), rint(0, dy + 1)], -1)
    br = torch.stack([rint(w - dx - 1, w), rint(h - dy - 1, h)], -1)
    bl = torch.stack([rint(0, dx + 1), rint(h - dy - 1, h)], -1)
    corners = torch.stack([tl, tr, br, bl], 1).float()
    side = int(round(math.sqrt(crop_scale * h * w)))
    side = max(1, min(side, h, w))
    crops = torch.stack([rint(0, h - side + 1), rint(0, w - side + 1), torch.full((n,), side)], -1)
    return AugmentParams(corners, crops, (h, w))


def _homographies(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """3x3 maps taking each src quad [N,4,2] to the matching dst quad (float64).

    The 8 coefficients are rounded to float32 afterwards, as torchvision's ``_get_perspective_coeffs``
    does, so the sampling positions are the ones torchvision computes.
    """
    src, dst = src.double(), dst.double()
    n = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # [N, 8, 8]
    b = torch.cat([u, v], 1)  # [N, 8]
    hvec = torch.linalg.solve(a, b).float().double()
    return torch.cat([hvec, torch.ones(n, 1, dtype=hvec.dtype)], 1).view(n, 3, 3)


@dataclass(frozen=True)
class AugmentGrid:
    """What `apply_augment` needs for N views, precomputed once per parameter set.

    Only the crop box of the perspective output is ever used, so the perspective is evaluated at the
    ``side x side`` pixels of each view's box: ``grid`` holds their source positions (grid_sample,
    ``align_corners=False``) and ``mask`` the warped all-ones channel torchvision blends the fill with.
    """

    grid: torch.Tensor  # [N, side, side, 2]
    mask: torch.Tensor  # [N, 1, side, side]
    out_size: tuple  # (Ho, Wo) the crops are resized to

    def __len__(self) -> int:
        return self.grid.shape[0]

    def index(self, idx: torch.Tensor) -> "AugmentGrid":
        idx = idx.to(self.grid.device)
        return AugmentGrid(self.grid[idx], self.mask[idx], self.out_size)

    def to(self, device=None, dtype=None) -> "AugmentGrid":
        return AugmentGrid(self.grid.to(device, dtype), self.mask.to(device, dtype), self.out_size)


def augment_grid(params: AugmentParams, out_size=None, device=None) -> AugmentGrid:
    """Sampling data of perspective-then-crop for every view of ``params``, built on ``device``.

    Perspective as torchvision's tensor ``perspective``: the homography taking the moved corners back
    to the image corners is applied to pixel centres ``(x + 0.5, y + 0.5)``, minus 0.5 gives the source
    pixel (bilinear, zeros outside). The result is then multiplied by the same warp of an all-ones
    image (torchvision's fill blend ``img * mask + (1 - mask) * fill`` with fill 0). The crop is a
    plain slice of that image; `apply_augment` resizes it to ``out_size`` (default: the image size)
    bilinearly with ``align_corners=False``, as ``resized_crop`` does.

    The small homography solve runs on the CPU in float64; the grid itself is built on ``device``
    (float64 on the CPU, float32 on accelerators, which saves a host-to-device copy per step).
    """
    h, w = params.size
    out = tuple(int(s) for s in (out_size or (h, w)))
    sides = params.crops[:, 2]
    side = int(sides[0]) if len(params) else 1
    if len(params) and not bool((sides == side).all()):
        raise ValueError("all views of one AugmentParams must share the crop side")
    device = torch.device(device) if device is not None else torch.device("cpu")
    dt = torch.float64 if device.type == "cpu" else torch.float32
    start = torch.tensor([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]]).expand_as(params.corners)
    # output pixel -> input pixel (the warped image shows the input squeezed into the quad `corners`)
    hom = _homographies(params.corners, start).to(device, dt)  # [N,3,3]
    top, left = (params.crops[:, i].to(device, dt).view(-1, 1, 1) for i in range(2))
    steps = torch.arange(side, dtype=dt, device=device)
    xc = left + steps.view(1, 1, side) + 0.5  # [N,1,s] centres of the box's pixels in the perspective output
    yc = top + steps.view(1, side, 1) + 0.5  # [N,s,1]
    hh = [hom[:, i, j].view(-1, 1, 1) for i in range(3) for j in range(3)]
    # the homography applied separably (broadcast [N,1,s] x [N,s,1] -> [N,s,s])
    den = (hh[6] * xc + hh[8]) + hh[7] * yc
    sx = ((hh[0] * xc + hh[2]) + hh[1] * yc) / den
    sy = ((hh[3] * xc + hh[5]) + hh[4] * yc) / den
    # align_corners=False: normalised -1..1 spans the outer pixel edges 0..w
    grid = torch.stack([sx * (2.0 / w) - 1.0, sy * (2.0 / h) - 1.0], -1).float()
    ones = torch.ones(len(params), 1, h, w, device=device)
    mask = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return AugmentGrid(grid, mask, out)


def apply_augment(
    images: torch.Tensor, params: Optional[AugmentParams], grid: Optional[AugmentGrid] = None
) -> torch.Tensor:
    """Augmented views of ``images`` [N,3,H,W] (one parameter set per image), as torchvision's
    ``perspective(fill=0)`` then ``resized_crop`` give them; differentiable in ``images``."""
    if grid is None:
        grid = augment_grid(params, device=images.device)
    g = grid.to(images.device, images.dtype)
    warped = F.grid_sample(images, g.grid, mode="bilinear", padding_mode="zeros", align_corners=False) * g.mask
    if tuple(warped.shape[-2:]) == g.out_size:
        return warped
    # Bilinear, align_corners=False, source indices clamped to the box (PyTorch's convention). When
    # upsampling (the default 200 -> 224) antialias=True computes exactly this, so it is only asked
    # for when shrinking, where it changes the result.
    shrink = any(s > o for s, o in zip(warped.shape[-2:], g.out_size))
    return F.interpolate(warped, size=g.out_size, mode="bilinear", align_corners=False, antialias=shrink)


def augment_pair(
    sketch: torch.Tensor,
    target: torch.Tensor,
    num_augs: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    settings: Optional[ObjectiveSettings] = None,
    **overrides,
):
    """1 clean + ``num_augs`` jointly augmented views of one sketch/target pair ([1,3,H,W] or [3,H,W]).

    settings: the objective's settings (None: the defaults; an `OptimizeConfig` or a whole `SketchSettings`
    too) with ``overrides`` of its fields (distortion, crop_scale); ``num_augs`` defaults to the settings'.

    Returns (sketch_views, target_views), each ``[1 + num_augs, 3, H, W]`` in 0..1 (not normalised).
    """
    if num_augs is not None:
        overrides["num_augs"] = num_augs
    st = ObjectiveSettings.of(settings, **overrides)
    num_augs = int(st.num_augs)
    s = sketch if sketch.ndim == 4 else sketch.unsqueeze(0)
    t = target if target.ndim == 4 else target.unsqueeze(0)
    if num_augs <= 0:
        return s, t
    params = sample_augment_params(num_augs, s.shape[-2:], generator, st.distortion, st.crop_scale)
    grid = augment_grid(params, device=s.device)
    xs = apply_augment(s.expand(num_augs, -1, -1, -1), params, grid)
    ys = apply_augment(t.expand(num_augs, -1, -1, -1).to(s.dtype), params, grid)
    return torch.cat([s, xs]), torch.cat([t.to(s.dtype), ys])


# --------------------------------------------------------------------------- features


def _resnet_features(visual, x: torch.Tensor, stages: Sequence[str], need_embedding: bool):
    feats = {}
    last = max(RESNET_STAGES.index(s) for s in stages) if stages else -1
    if need_embedding:
        last = len(RESNET_STAGES) - 1
    x = visual.stem(x)
    if "stem" in stages:
        feats["stem"] = x
    for i, name in enumerate(RESNET_STAGES[1:], start=1):
        if i > last:
            break
        x = getattr(visual, name)(x)
        if name in stages:
            feats[name] = x
    emb = visual.attnpool(x) if need_embedding else None
    return feats, emb


def _vit_features(visual, x: torch.Tensor, blocks: Sequence[str], need_embedding: bool):
    idx = sorted({int(b[len("block") :]) for b in blocks})
    out = visual.forward_intermediates(x, indices=idx or [0], output_fmt="NLC", intermediates_only=not need_embedding)
    feats = {f"block{i}": t for i, t in zip(idx, out["image_intermediates"])}
    return feats, out.get("image_features")


def default_layer_weights(encoder) -> Dict[str, float]:
    if not encoder.is_vit:
        return dict(DEFAULT_RESNET_WEIGHTS)
    n = len(encoder.visual.transformer.resblocks)
    a, b = max(0, round(n * 0.25)), max(0, round(n * 0.5))
    return {f"block{a}": 1.0, f"block{b}": 1.0} if a != b else {f"block{a}": 1.0}


def check_layer_weights(encoder, layer_weights: Dict[str, float]) -> Dict[str, float]:
    weights = {str(k): float(v) for k, v in layer_weights.items()}
    if encoder.is_vit:
        n = len(encoder.visual.transformer.resblocks)
        valid = [f"block{i}" for i in range(n)]
    else:
        valid = list(RESNET_STAGES)
    bad = [k for k in weights if k not in valid]
    if bad:
        kind = "ViT" if encoder.is_vit else "ResNet"
        raise LossConfigError(
            f"layer(s) {bad} do not exist in the {kind} encoder {encoder.name!r}; use some of {valid}"
        )
    if any(not math.isfinite(v) or v < 0 for v in weights.values()):
        raise LossConfigError(f"layer weights must be finite and >= 0; got {weights}")
    return {k: v for k, v in weights.items() if v > 0}


# --------------------------------------------------------------------------- the loss


class CLIPassoLoss:
    """Geometric + semantic CLIP loss against one target image, per candidate sketch.

    ``aug_pool`` > 0 switches to a fixed pool of that many augmentations drawn once (from
    ``pool_seed``) whose target features are cached; each iteration every candidate picks
    ``num_augs`` of them with its own generator. That removes the target forward passes from the loop
    (the `fast` preset); 0 draws fresh augmentations every iteration as the paper does.
    """

    def __init__(
        self,
        encoder,
        target: torch.Tensor,
        settings: Optional[ObjectiveSettings] = None,
        *,
        amp_dtype: Optional[torch.dtype] = None,
        eval_amp_dtype="same",
        text_embedding: Optional[torch.Tensor] = None,
        text_weight: float = 0.0,
        **overrides,
    ):
        """settings: the objective's settings (None: the defaults; an `OptimizeConfig` is one) with
        ``overrides`` of its fields (layer_weights, geometric_weight, semantic_weight, num_augs, aug_pool,
        pool_seed, distortion, crop_scale, distance), validated by the settings. ``text_weight`` weighs
        ``text_embedding`` (`clipasso.objective.text.encode_text`; without one there is no text term)."""
        st = ObjectiveSettings.of(settings, **overrides)
        pool_seed = st.pool_seed
        layer_weights, semantic_weight, num_augs, aug_pool = (
            st.layer_weights,
            st.semantic_weight,
            st.num_augs,
            st.aug_pool,
        )
        self.encoder = encoder
        if st.geometric_weight != 1.0:
            base = default_layer_weights(encoder) if layer_weights is None else layer_weights
            layer_weights = {k: v * float(st.geometric_weight) for k, v in base.items()}
        self.layer_weights = check_layer_weights(
            encoder, default_layer_weights(encoder) if layer_weights is None else layer_weights
        )
        # text guidance (clipasso.objective.text): 1 - cos(sketch embedding, prompt embedding), over the same views
        msg = field_option("text_weight").problem("text_weight", text_weight)
        if msg:
            raise SettingsError(msg)
        if text_weight > 0 and text_embedding is None:
            raise LossConfigError("text_weight > 0 needs a text embedding (clipasso.objective.text.encode_text)")
        self.text_weight = float(text_weight) if text_embedding is not None else 0.0
        self.text_embedding = (
            None if text_embedding is None else text_embedding.detach().reshape(1, -1).to(encoder.device, torch.float32)
        )
        if not self.layer_weights and semantic_weight == 0 and self.text_weight == 0:
            raise LossConfigError("all loss weights are zero: nothing to optimise")
        self.semantic_weight = float(semantic_weight)
        self.num_augs = int(num_augs)
        self.distortion, self.crop_scale = float(st.distortion), float(st.crop_scale)
        self.distance = st.distance
        self.aug_pool = int(aug_pool)
        self.amp_dtype = amp_dtype
        self.compiled_step = None  # enable_compile(): the training step through torch.compile
        self.eval_amp_dtype = (
            amp_dtype if isinstance(eval_amp_dtype, str) and eval_amp_dtype == "same" else eval_amp_dtype
        )
        self.device = encoder.device
        t = target if target.ndim == 4 else target.unsqueeze(0)
        if t.shape[0] != 1 or t.shape[1] != 3:
            raise LossConfigError(f"target must be one RGB image [3,H,W]; got {tuple(target.shape)}")
        self.size = tuple(t.shape[-2:])
        # A canvas larger than the encoder's input (e.g. 448 for a 224 model) is downsampled with a box
        # (area) filter once per render; augmentations and features then work at that size.
        self.work_size = tuple(min(int(n), int(encoder.image_size)) for n in self.size)
        self.target = self._to_work_size(t.detach().to(self.device, torch.float32))
        with torch.no_grad():
            self._clean_target = self._features(self.target)
            self._eval_target = (
                self._clean_target
                if self.eval_amp_dtype == self.amp_dtype
                else self._features(self.target, self.eval_amp_dtype)
            )
            self._pool = None
            if self.aug_pool:
                gen = torch.Generator().manual_seed(int(pool_seed))
                params = sample_augment_params(self.aug_pool, self.work_size, gen, self.distortion, self.crop_scale)
                self._pool_grid = augment_grid(params, device=self.device)  # reused every step
                views = apply_augment(self.target.expand(self.aug_pool, -1, -1, -1), params, self._pool_grid)
                self._pool = self._features(views)

    # .................................................................. encoder
    def _features(self, images: torch.Tensor, amp_dtype="train"):
        """(per-layer features, embedding or None) of 0..1 images, in fp32; the encoder runs under
        autocast to ``amp_dtype`` (default: the training one; None: fp32)."""
        amp_dtype = self.amp_dtype if isinstance(amp_dtype, str) else amp_dtype
        enc = self.encoder
        x = images
        if tuple(x.shape[-2:]) != (enc.image_size, enc.image_size):
            x = F.interpolate(x, size=(enc.image_size, enc.image_size), mode="bilinear", align_corners=False)
        x = enc.normalize(x).to(enc.dtype)
        if not enc.is_vit:
            x = x.contiguous(memory_format=torch.channels_last)
        step = self.compiled_step
        if step is not None and step.enabled and amp_dtype == self.amp_dtype and torch.is_grad_enabled():
            outs = step(x)  # the training step, compiled (clipasso.models.compiled)
        else:
            outs = self._encode(x, amp_dtype)
        names = list(self.layer_weights)
        feats = {k: v.float() for k, v in zip(names, outs[: len(names)])}
        emb = outs[len(names)] if len(outs) > len(names) else None
        return feats, (emb.float() if emb is not None else None)

    def _encode(self, x: torch.Tensor, amp_dtype) -> tuple:
        """The encoder on normalised input under autocast to ``amp_dtype``: the layers' features in
        ``layer_weights`` order, then the embedding when a term needs it (the function compiled)."""
        enc = self.encoder
        need_emb = self.semantic_weight > 0 or self.text_weight > 0
        with autocast(x.device, amp_dtype):
            if enc.is_vit:
                feats, emb = _vit_features(enc.visual, x, list(self.layer_weights), need_emb)
            else:
                feats, emb = _resnet_features(enc.visual, x, list(self.layer_weights), need_emb)
        outs = tuple(feats[k] for k in self.layer_weights)
        return outs + ((emb,) if emb is not None else ())

    def compiled(self) -> "CompiledStep":
        """The training step's `clipasso.models.compiled.CompiledStep` (made once, not yet enabled:
        ``.enable()`` switches the step to it; it stays eager where compiling is impossible)."""
        if self.compiled_step is None:
            from ..device import precision_label
            from ..models.compiled import CompiledStep, machine_key

            amp = self.amp_dtype
            size = sum(p.numel() for p in self.encoder.visual.parameters())  # tells same-named models apart
            model = f"{self.encoder.name} ({size / 1e6:.2f}M)"
            prefix = "|".join((machine_key(self.device), model, precision_label(amp), ",".join(self.layer_weights)))
            self.compiled_step = CompiledStep(
                lambda x: self._encode(x, amp),
                self.device,
                prefix,
                identity=(id(self.encoder.visual), self.semantic_weight > 0 or self.text_weight > 0),
            )
        return self.compiled_step

    def train_input_shape(self, candidates: int) -> tuple:
        """The encoder's input shape in a training step of ``candidates`` sketches (clean + augmented views)."""
        size = int(self.encoder.image_size)
        return (int(candidates) * (1 + self.num_augs), 3, size, size)

    # .................................................................. terms
    def _terms(self, sk, tg, n_cand: int) -> Dict[str, torch.Tensor]:
        """Per-candidate terms; views of candidate b are rows b*V .. b*V+V-1."""
        sf, se = sk
        tf, te = tg
        out = {}
        total = None
        for name, wgt in self.layer_weights.items():
            diff = sf[name] - tf[name]
            d = diff.square() if self.distance == "l2" else diff.abs()
            per = d.reshape(n_cand, -1).mean(1)
            out[f"geometric_{name}"] = per
            total = per * wgt if total is None else total + per * wgt
        if self.semantic_weight > 0:
            cos = F.cosine_similarity(se, te, dim=-1)
            sem = (1 - cos).reshape(n_cand, -1).mean(1)
            out["semantic"] = sem
            total = sem * self.semantic_weight if total is None else total + sem * self.semantic_weight
        if self.text_weight > 0:
            if self.text_embedding.shape[-1] != se.shape[-1]:
                raise LossConfigError(
                    f"the text embedding has {self.text_embedding.shape[-1]} dimensions but the "
                    f"image embedding {se.shape[-1]}; encode the prompt with the loss model"
                )
            txt = (1 - F.cosine_similarity(se, self.text_embedding, dim=-1)).reshape(n_cand, -1).mean(1)
            out["text"] = txt
            total = txt * self.text_weight if total is None else total + txt * self.text_weight
        out["total"] = total
        return out

    def _check(self, sketch: torch.Tensor) -> torch.Tensor:
        if sketch.ndim != 4 or sketch.shape[1] != 3:
            raise LossConfigError(f"sketch renders must be [B,3,H,W]; got {tuple(sketch.shape)}")
        if tuple(sketch.shape[-2:]) != self.size:
            raise LossConfigError(f"sketch size {tuple(sketch.shape[-2:])} differs from the target size {self.size}")
        return self._to_work_size(sketch.to(self.device, torch.float32))

    def _to_work_size(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) == self.work_size:
            return images
        # area = box filter: a 2x render averaged 2x2 is what the rasterizer draws at 1x (exact coverage)
        return F.interpolate(images, size=self.work_size, mode="area")

    def eval_loss(self, sketch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Loss of the clean view only, per candidate (the value best-of-N compares), in the eval precision
        (``eval_amp_dtype``). Call under no_grad."""
        return self._clean_loss(self._check(sketch), self.eval_amp_dtype, self._eval_target)

    def _clean_loss(self, sketch: torch.Tensor, amp_dtype="train", target=None) -> Dict[str, torch.Tensor]:
        """Clean-view loss of checked renders, by default in the training precision."""
        b = sketch.shape[0]
        feats, emb = self._features(sketch, amp_dtype)
        tf, te = self._clean_target if target is None else target
        tg = ({k: v.expand(b, *v.shape[1:]) for k, v in tf.items()}, None if te is None else te.expand(b, -1))
        return self._terms((feats, emb), tg, b)

    def train_loss(self, sketch: torch.Tensor, generators: Sequence[torch.Generator]) -> Dict[str, torch.Tensor]:
        """Loss over 1 clean + ``num_augs`` augmented views per candidate; ``generators`` one per candidate."""
        sketch = self._check(sketch)
        b = sketch.shape[0]
        if len(generators) != b:
            raise LossConfigError(f"need one generator per candidate ({b}); got {len(generators)}")
        a = self.num_augs
        if a == 0:
            return self._clean_loss(sketch)
        tf, te = self._clean_target
        if self.aug_pool:
            picks = torch.stack([torch.randperm(self.aug_pool, generator=g)[:a] for g in generators])  # [B,A]
            grid = self._pool_grid.index(picks.reshape(-1))
            pf, pe = self._pool
            flat = picks.reshape(-1).to(self.device)
            aug_tf = {k: t[flat] for k, t in pf.items()}
            aug_te = None if pe is None else pe[flat]
        else:
            params = AugmentParams.cat(
                [sample_augment_params(a, self.work_size, g, self.distortion, self.crop_scale) for g in generators]
            )
            grid = augment_grid(params, device=self.device)
            with torch.no_grad():
                views = apply_augment(self.target.expand(b * a, -1, -1, -1), params, grid)
                aug_tf, aug_te = self._features(views)
        sk_aug = apply_augment(sketch.repeat_interleave(a, 0), None, grid)
        views = torch.cat([sketch.unsqueeze(1), sk_aug.view(b, a, *sketch.shape[1:])], 1).flatten(0, 1)
        feats, emb = self._features(views)

        def interleave(clean, aug):  # [1,...] clean + [B*A,...] augmented -> [B*V,...]
            clean = clean.expand(b, 1, *clean.shape[1:])
            return torch.cat([clean, aug.view(b, a, *aug.shape[1:])], 1).flatten(0, 1)

        tg_f = {k: interleave(tf[k], aug_tf[k]) for k in tf}
        tg_e = None if te is None else interleave(te, aug_te)
        return self._terms((feats, emb), (tg_f, tg_e), b)

    __call__ = train_loss


# --------------------------------------------------------------------------- weights-free trace loss

TRACE_LINE_THICKNESS = 3


def _gaussian_kernel(sigma: float, truncate: float = 3.0) -> torch.Tensor:
    radius = max(1, int(truncate * sigma + 0.5))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    return (k / k.sum()).float()


def blur_ink(ink: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blurred ink maps ``[N,1,H,W]`` at scale ``sigma`` px, on a pyramid level.

    The map is first box-averaged by the largest power of two ``f <= sigma`` (so the result is
    ``[N,1,H/f,W/f]``), then blurred by ``sigma/f`` (>= 1 px) with a separable kernel: the same
    scale as a full-resolution blur at a fraction of its cost (long 1-channel kernels are slow on
    CPUs). Outside the canvas is paper (zero ink).
    """
    f = 1
    while f * 2 <= sigma:
        f *= 2
    x = ink
    if f > 1:
        x = F.avg_pool2d(x, f, stride=f, ceil_mode=True)
    k = _gaussian_kernel(sigma / f).to(x.device, x.dtype)
    r = (k.numel() - 1) // 2
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(r, 0))


def ink_of(images: torch.Tensor) -> torch.Tensor:
    """``[N,3,H,W]`` 0..1 RGB on white -> ``[N,1,H,W]`` ink amount ``1 - grey`` (0 = paper)."""
    from ..prepare.xdog import GREY_WEIGHTS

    w = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (1.0 - (images * w).sum(1, keepdim=True)).clamp(0, 1)


def line_map(image: torch.Tensor, thickness: int = TRACE_LINE_THICKNESS) -> torch.Tensor:
    """[H,W] 0/1 lines to trace in ``image`` ([3,H,W] 0..1): the outline of its XDoG ink map (thin
    dark lines stay as they are, filled dark regions become their contour), thickened to about
    ``thickness`` px (the default strokes are 3 px wide)."""
    from ..prepare.xdog import xdog_edges

    ink = xdog_edges(image.detach().float().cpu().clamp(0, 1))[None, None]
    eroded = -F.max_pool2d(-ink, 3, stride=1, padding=1)
    lines = (ink - eroded).clamp(0, 1)
    if thickness > 1:
        lines = F.max_pool2d(lines, 2 * (thickness // 2) + 1, stride=1, padding=thickness // 2)
    return lines[0, 0]


class TraceLoss:
    """Weights-free image-space loss: multi-scale blurred L2 between the sketch's ink and the target's.

    ink = 1 - grey. The target's ink is, with ``reference="edges"`` (default), its XDoG line map
    (`clipasso.prepare.xdog.xdog_edges`: contours and dark lines, so the strokes *trace* the picture), or
    with ``"image"`` the picture's own darkness. Per blur scale sigma (pixels, default 1, 2, 4, 8)::

        term_sigma = mean((G_sigma * ink(S) - G_sigma * ink(T))^2) / mean((G_sigma * ink(T))^2)

    and the loss is the mean of the terms: 0 when the sketch's ink equals the reference, 1 for a
    blank sketch. The fine scales place strokes on the lines, the coarse ones pull far-away strokes
    towards ink they cannot see yet. No encoder, no augmentation: ``train_loss`` is the clean-view
    ``eval_loss`` (same interface as `CLIPassoLoss`, so the optimiser takes either).
    """

    def __init__(
        self,
        target: torch.Tensor,
        settings: Optional[ObjectiveSettings] = None,
        *,
        device=None,
        sigmas: Optional[Sequence[float]] = None,
        reference: Optional[str] = None,
        **overrides,
    ):
        """settings: the objective's settings (None: the defaults; an `OptimizeConfig` or a whole
        `SketchSettings` too) with ``overrides`` of its fields; ``sigmas`` and ``reference`` are its
        ``trace_sigmas`` and ``trace_reference`` by their short names. Validated by the settings."""
        if sigmas is not None:
            overrides["trace_sigmas"] = sigmas
        if reference is not None:
            overrides["trace_reference"] = reference
        st = ObjectiveSettings.of(settings, **overrides)
        t = target if target.ndim == 4 else target.unsqueeze(0)
        if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] != 3:
            raise LossConfigError(f"target must be one RGB image [3,H,W]; got {tuple(target.shape)}")
        sig, reference = tuple(float(v) for v in st.trace_sigmas), st.trace_reference
        self.sigmas, self.reference = sig, reference
        self.device = torch.device(device) if device is not None else t.device
        self.size = tuple(t.shape[-2:])
        self.amp_dtype = None
        t = t.detach().float()
        if reference == "edges":
            ref = line_map(t[0])[None, None]
        else:
            ref = ink_of(t)
        self.reference_ink = ref.to(self.device, torch.float32)  # [1,1,H,W]
        self._blurred = [blur_ink(self.reference_ink, s) for s in self.sigmas]
        self._energy = [b.square().mean().clamp(min=1e-6) for b in self._blurred]

    def _check(self, sketch: torch.Tensor) -> torch.Tensor:
        if sketch.ndim != 4 or sketch.shape[1] != 3:
            raise LossConfigError(f"sketch renders must be [B,3,H,W]; got {tuple(sketch.shape)}")
        if tuple(sketch.shape[-2:]) != self.size:
            raise LossConfigError(f"sketch size {tuple(sketch.shape[-2:])} differs from the target size {self.size}")
        return sketch.to(self.device, torch.float32)

    def eval_loss(self, sketch: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per candidate: ``trace_s<sigma>`` for each scale and ``total`` (their mean)."""
        ink = ink_of(self._check(sketch))
        b = ink.shape[0]
        out, total = {}, None
        for s, ref, energy in zip(self.sigmas, self._blurred, self._energy):
            per = (blur_ink(ink, s) - ref).square().reshape(b, -1).mean(1) / energy
            out[f"trace_s{s:g}"] = per
            total = per if total is None else total + per
        out["total"] = total / len(self.sigmas)
        return out

    def train_loss(
        self, sketch: torch.Tensor, generators: Optional[Sequence[torch.Generator]] = None
    ) -> Dict[str, torch.Tensor]:
        return self.eval_loss(sketch)

    __call__ = train_loss
