"""Scene mode: a whole photo sketched in two layers, each with its own strokes, start points and loss.

CLIPasso cuts the object out and sketches it alone; a background then either disappears or turns the
whole sketch into a tangle. Scene mode (``scene=True``, ``clipasso sketch PHOTO --scene``) follows
CLIPascene (Vinker et al., ICCV 2023):

1. split (`clipasso.prepare.layers.split_layers`): the matte gives the foreground target (the object on
   white) and the background target (the picture with the object's hole inpainted); a picture without a
   salient object is one background layer;
2. each layer is sketched on its own (`sketch_layer`): its stroke budget (``strokes`` for the foreground,
   ``background_strokes`` for the background), its start points (saliency and XDoG edges of its own
   target, only inside its region: the object, or everything outside the hole), and its objective
   (`layer_settings`): the foreground keeps the sketch's loss (CLIPasso's RN101 loss by default); the
   background's geometric term compares the patch tokens of one block of the saliency ViT (ViT-B/32,
   block ``scene_fidelity``: literal 2, balanced 8, loose 11), plus the semantic term. The trace loss
   works per layer as well (the background traces the inpainted background's outlines), so the mode runs
   without any CLIP weights. Best of N, automatic abstraction (``auto_strokes`` prunes each layer) and the
   drawing order run per layer;
3. the layers' winners are joined, background first (`Strokes.join_layers`, every stroke labelled with
   its layer), and a short joint pass (`joint_pass`, ``joint_iterations``, default a tenth of the
   iterations) moves all strokes together against the whole picture with the foreground's loss, so the
   layers meet where they touch. It keeps the best state it evaluates, the joined sketch included, so it
   never ends with a higher joint loss than it started with; `JointResult` records the loss before and
   after and what each layer's own loss and stroke positions did.

The layers run one after the other: their objectives differ (two encoders, two targets), so one batch
would not save a forward pass. The SVG writes one group per layer (`clipasso.output.svg`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .errors import PipelineError
from .prepare.layers import LAYER_NAMES, SceneLayers, split_layers
from .settings import DEFAULT_SALIENCY_MODEL, SketchSettings
from .strokes import Strokes

log = logging.getLogger(__name__)

JOINT_SHARE = 0.1  # the joint pass's default length, as a share of the iterations


@dataclass
class LayerResult:
    """One layer of a scene sketch, in the optimisation frame (the square canvas)."""

    name: str
    target: torch.Tensor  # [3,S,S] what the layer's loss compared against
    region: torch.Tensor  # [S,S] 1 where its strokes could start
    saliency: Optional[torch.Tensor]  # [S,S] its start-point map (None for saliency "none")
    initial: Strokes  # every candidate's starting strokes
    run: object  # clipasso.optimize.OptimizeResult
    strokes: Strokes  # the layer's winner after its post-processing, its strokes labelled with the layer
    index: int  # the winner's candidate index
    objective: object  # clipasso.objective.Objective of the layer
    settings: SketchSettings  # the layer's own settings (`layer_settings`)
    abstraction: Optional[object] = None
    drawing_order: Optional[object] = None

    @property
    def loss(self) -> float:
        """The layer winner's loss under its own objective, as it left the layer's stage."""
        return float(self.objective.evaluate(self.strokes)[0])


@dataclass
class JointResult:
    """What the joint pass did: losses before and after it and how far each layer's strokes moved."""

    iterations: int
    loss_before: float  # the joined layers under the joint objective (the whole picture)
    loss_after: float
    layer_losses_before: Dict[str, float]  # each layer's strokes under its own objective
    layer_losses_after: Dict[str, float]
    moved: Dict[str, float]  # mean control-point displacement per layer, canvas pixels
    run: Optional[object] = None  # clipasso.optimize.OptimizeResult (None when no step ran)

    def to_dict(self) -> Dict:
        return {k: v for k, v in self.__dict__.items() if k != "run"}


# --------------------------------------------------------------------------- settings of a layer


def layer_settings(settings: SketchSettings, layer: str) -> SketchSettings:
    """The settings one layer is sketched with (scene off: they describe a plain sketch of that layer).

    foreground: the sketch's own. background: ``background_strokes`` strokes (and, with ``auto_strokes``,
    pruned from that many or grown up to it); with a CLIP loss the encoder is the saliency ViT (its
    weights file too; ViT-B/32 when saliency uses a timm model) with the geometric term on block
    ``scene_fidelity`` alone; no text prompt (it describes the object)."""
    if not isinstance(settings, SketchSettings):
        raise PipelineError(f"settings must be a clipasso.settings.SketchSettings; got {type(settings).__name__}")
    if layer not in LAYER_NAMES:
        raise PipelineError(f"unknown layer {layer!r}; the layers are {', '.join(LAYER_NAMES)}")
    s = settings.replace(scene=False)
    if layer == "foreground":
        return s
    vit_from_saliency = s.saliency != "timm-vit"
    changes = dict(
        strokes=int(s.background_strokes),
        text=None,
        clip_model=s.saliency_model if vit_from_saliency else DEFAULT_SALIENCY_MODEL,
        clip_pretrained=s.saliency_pretrained,
        clip_weights=s.saliency_weights if vit_from_saliency else None,
        layer_weights={f"block{s.objective.scene_block}": 1.0},
    )
    if s.auto_strokes is not None:
        changes["max_strokes"] = int(s.background_strokes)
    return s.replace(**changes)


def scene_steps(settings: SketchSettings, layers: int = 2) -> int:
    """Optimisation steps of a scene sketch with ``layers`` layers: each layer's run and the joint pass."""
    return layers * int(settings.iterations) + joint_iterations(settings)


def joint_iterations(settings) -> int:
    n = getattr(settings, "joint_iterations", None)
    return int(n) if n is not None else int(round(JOINT_SHARE * int(settings.iterations)))


# --------------------------------------------------------------------------- one layer


def layer_objective(settings: SketchSettings, layer: str, target: torch.Tensor, device=None, encoder=None):
    """The `clipasso.objective.Objective` of ``layer`` (`layer_settings`) for ``target`` [3,S,S]; the encoder
    is loaded when the loss needs one and none is given. A fidelity block the ViT lacks is a clear error."""
    from .device import pick_device
    from .models import loss_encoder
    from .objective import Objective
    from .objective.losses import LossConfigError

    ls = settings if not settings.scene else layer_settings(settings, layer)
    cfg = ls.optimize_config()
    dev = torch.device(device) if device is not None else pick_device(ls.device)
    if cfg.uses_clip and encoder is None:
        encoder = loss_encoder(ls, dev)
    try:
        return Objective.build(cfg, encoder if cfg.uses_clip else None, target, dev)
    except LossConfigError:
        if layer == "background" and encoder is not None and encoder.is_vit:
            n = len(encoder.visual.transformer.resblocks)
            raise PipelineError(
                f"scene fidelity block {settings.objective.scene_block} does not exist in the background's "
                f"ViT {encoder.name!r}, which has blocks 0-{n - 1}; give --scene-fidelity (scene_fidelity) "
                f"a block in 0-{n - 1}"
            ) from None
        raise


def place_layer(settings: SketchSettings, layers: SceneLayers, layer: str, device=None, seeds=None):
    """(initial strokes of every seed, start-point map or None) of ``layer``: the saliency map of the layer's
    own target (method ``saliency``; "mask" is the layer's region), times its XDoG edges unless
    ``use_edges`` is off, restricted to the layer's region. ``settings``: the whole scene's or the layer's."""
    from .device import pick_device
    from .place.init import initialize_strokes
    from .place.saliency import saliency_for_settings

    ls = settings if not settings.scene else layer_settings(settings, layer)
    dev = torch.device(device) if device is not None else pick_device(ls.device)
    target, region = layers.target(layer), layers.region(layer)
    if target is None:
        raise PipelineError(f"this picture has no {layer} layer; its layers are {', '.join(layers.names)}")
    sal = saliency_for_settings(target, region, ls, dev)
    edges = None
    if ls.use_edges and sal is not None:
        from .prepare.xdog import xdog_edges

        edges = xdog_edges(target)
    canvas = tuple(target.shape[-2:])
    initial = initialize_strokes(
        canvas,
        ls.optimized_strokes,
        list(seeds if seeds is not None else ls.seed_list()),
        saliency=sal,
        edges=edges,
        mask=region,
        settings=ls,
    )
    return initial, sal


def sketch_layer(
    settings: SketchSettings,
    layers: SceneLayers,
    layer: str,
    *,
    device=None,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    notes: Optional[List[str]] = None,
) -> LayerResult:
    """Sketch one layer of ``layers`` on its own: place, optimise every seed, best of N, then automatic
    abstraction and drawing order as the settings ask (all with the layer's objective)."""
    from .device import pick_device
    from .optimize import optimize
    from .post.select import select_best
    from .post.stage import post_process

    ls = layer_settings(settings, layer) if settings.scene else settings
    dev = torch.device(device) if device is not None else pick_device(ls.device)
    target, region = layers.target(layer), layers.region(layer)
    objective = layer_objective(ls, layer, target, dev)
    seeds = ls.seed_list()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        initial, sal = place_layer(ls, layers, layer, dev, seeds)
    if notes is not None:
        notes.extend(f"{layer}: {w.message}" for w in caught)
    cfg = ls.optimize_config()
    run = optimize(initial, target, objective, cfg, callback=callback, should_stop=should_stop, seeds=seeds)
    winner, index = select_best(run.strokes)
    ab = ordering = None
    if ls.auto_strokes is not None or ls.drawing_order:
        prior = None
        if ls.abstraction_method == "grow" and sal is not None:
            prior = sal * region.to(sal)
            if not float(prior.max()) > 0:
                prior = None
        winner, ab, ordering = post_process(winner, target, objective, cfg, ls, should_stop=should_stop, prior=prior)
    winner = winner.replace(layers=(layer,) * winner.num_strokes)
    return LayerResult(layer, target, region, sal, initial, run, winner, index, objective, ls, ab, ordering)


# --------------------------------------------------------------------------- the layers together


def combine_layers(parts) -> Strokes:
    """One layered sketch from per-layer sketches (a dict or pairs of layer name -> one-candidate or
    B-candidate `Strokes`, or `LayerResult` objects), background first: `Strokes.join_layers`."""
    if isinstance(parts, dict):
        pairs = list(parts.items())
    else:
        pairs = [(p.name, p) if isinstance(p, LayerResult) else tuple(p) for p in parts]
    pairs = [(n, p.strokes if isinstance(p, LayerResult) else p) for n, p in pairs]
    order = {n: i for i, n in enumerate(LAYER_NAMES)}
    pairs.sort(key=lambda p: order.get(p[0], len(order)))
    return Strokes.join_layers(pairs)


def joint_pass(
    strokes: Strokes,
    picture: torch.Tensor,
    objective,
    config,
    iterations: int,
    *,
    layer_objectives: Optional[Dict[str, object]] = None,
    callback: Optional[Callable] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Tuple[Strokes, JointResult]:
    """All strokes of a layered sketch (one candidate) optimised together for ``iterations`` steps against
    ``picture`` with ``objective`` (an `Objective` built for the picture) and ``config`` (an
    `OptimizeConfig`; its re-seeding, seed trial and plateau stop are off here: a re-seeded stroke would
    leave its layer). ``layer_objectives`` (name -> Objective): each layer's own loss, measured before and
    after. Returns (the strokes, labels kept, with the joint loss; a `JointResult`)."""
    from .optimize import optimize

    if strokes.layers is None:
        raise PipelineError("joint_pass needs layered strokes (combine_layers / Strokes.join_layers)")
    if strokes.num_candidates != 1:
        raise PipelineError(f"joint_pass takes one candidate (the joined winners); got {strokes.num_candidates}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise PipelineError(f"the joint pass's iterations must be a whole number >= 0; got {iterations!r}")
    layer_objectives = layer_objectives or {}

    def layer_losses(sk: Strokes) -> Dict[str, float]:
        return {n: float(o.evaluate(sk.layer(n))[0]) for n, o in layer_objectives.items() if n in sk.layer_names}

    before = float(objective.evaluate(strokes)[0])
    lb = layer_losses(strokes)
    run = None
    out = strokes.replace(losses=torch.tensor([before]), iterations=torch.zeros(1, dtype=torch.long))
    if iterations > 0:
        cfg = config.replace(iterations=int(iterations), reseed_interval=0, seed_trial=0.0, plateau=0.0)
        run = optimize(strokes, picture, objective, cfg, callback=callback, should_stop=should_stop)
        out = run.strokes
    after = float(objective.evaluate(out)[0])
    moved = {}
    for n in strokes.layer_names:
        a, b = strokes.layer(n).points.cpu(), out.layer(n).points.cpu()
        moved[n] = float((a - b).norm(dim=-1).mean())
    result = JointResult(int(iterations), before, after, lb, layer_losses(out), moved, run)
    return out, result


# --------------------------------------------------------------------------- the whole scene


def sketch_scene(image, s: SketchSettings, *, callback=None, should_stop=None, notes=None) -> Dict:
    """What `clipasso.pipeline.sketch` does with ``scene=True`` (the way to call it): see the module docstring.
    ``s``: validated settings. Returns the `clipasso.pipeline.SketchResult` fields it makes (``layers`` and
    ``joint`` among them) and a ``summary`` of what the run used; ``notes`` gets what was done."""
    from .device import pick_device, precision_label
    from .objective import Objective
    from .prepare.target import prepare_picture, to_picture_frame

    notes = [] if notes is None else notes
    dev = pick_device(s.device)
    picture, mask, (pic_h, pic_w) = prepare_picture(
        image, s.prepare, s.models_dir, s.allow_download, notes, keep_background=True
    )
    layers = split_layers(picture, mask)
    if layers.names == ("background",):
        notes.append("scene: no salient object found; the picture is sketched as one background layer")
    elif layers.names == ("foreground",):
        notes.append("scene: the object fills the picture; it is sketched as one foreground layer")

    steps_done = [0]  # the progress callback counts the layers' steps and the joint pass's as one run

    def step_callback(it, losses, render):
        if callback is not None:
            callback(steps_done[0] + it, losses, render)

    results: Dict[str, LayerResult] = {}
    for name in layers.names:
        results[name] = sketch_layer(
            s, layers, name, device=dev, callback=step_callback, should_stop=should_stop, notes=notes
        )
        steps_done[0] += int(s.iterations)
        if results[name].run.cancelled:
            break
    cancelled = any(r.run.cancelled for r in results.values())

    main = results.get("foreground") or results["background"]
    joined = combine_layers(list(results.values())).replace(seeds=main.strokes.seeds)
    cfg = main.settings.optimize_config()
    joint_objective = Objective.build(cfg, main.objective.encoder, picture, main.objective.device)
    n_joint = 0 if cancelled else joint_iterations(s)
    final, joint = joint_pass(
        joined,
        picture,
        joint_objective,
        cfg,
        n_joint,
        layer_objectives={n: r.objective for n, r in results.items()},
        callback=step_callback,
        should_stop=should_stop,
    )
    cancelled = cancelled or (joint.run is not None and joint.run.cancelled)
    notes.append(
        f"scene: {', '.join(f'{n} {r.strokes.num_strokes} strokes' for n, r in results.items())}; joint pass "
        f"{n_joint} steps: loss on the whole picture {joint.loss_before:.4f} -> {joint.loss_after:.4f}"
    )
    if cancelled:
        notes.append("cancelled: returning the best state each layer reached")

    maps = [r.saliency * r.region for r in results.values() if r.saliency is not None]
    enc = joint_objective.encoder
    bg_enc = results["background"].objective.encoder if "background" in results else None
    summary = dict(
        scene=True,
        layers={n: r.strokes.num_strokes for n, r in results.items()},
        background_strokes=int(s.background_strokes),
        scene_fidelity=s.scene_fidelity,
        scene_block=s.objective.scene_block,
        background_model=bg_enc.name if bg_enc is not None else None,
        joint=joint.to_dict(),
        strokes=int(final.num_strokes),
        seeds=list(s.seed_list()),
        canvas=int(s.canvas),
        device=str(dev),
        clip_model=enc.name if enc is not None else None,
        clip_source=enc.source if enc is not None else None,
        input_size=[pic_h, pic_w],
        precision=precision_label(joint_objective.amp_dtype),
        stop_reason="cancelled" if cancelled else main.run.stop_reason,
        iterations_run=main.run.iterations_run,
        abstraction=(s.abstraction_method if s.auto_strokes is not None else None),
    )
    shown = to_picture_frame(final, pic_h, pic_w, s.framing)
    return dict(
        strokes=shown,
        candidates=shown,
        index=0,
        target=picture,
        mask=layers.mask,
        saliency=torch.stack(maps).sum(0).clamp(0, 1) if maps else None,
        initial=combine_layers([(n, r.initial) for n, r in results.items()]),
        run=joint.run if joint.run is not None else main.run,
        frame_strokes=final,
        layers=results,
        joint=joint,
        summary=summary,
    )


__all__ = [
    "LayerResult",
    "JointResult",
    "layer_settings",
    "layer_objective",
    "place_layer",
    "sketch_layer",
    "combine_layers",
    "joint_pass",
    "joint_iterations",
    "scene_steps",
    "sketch_scene",
    "split_layers",
    "SceneLayers",
]
