"""Node inputs generated from the engine's settings (`clipasso.settings`), and widget values back into
settings. No node holds its own copy of a default, range or help text: `setting_input` reads them
from the settings field; the widget names are today's (so saved workflows load with the same values).

Widgets that stand for "the preset's value" keep their old sentinel (iterations 0, seeds 0,
augmentations -1, framing "preset"); empty text and pen width 0 mean "off". `settings_overrides`
turns widget values into settings fields and `loop_config` builds the optimiser's settings (objective
and loop) from them: Optimize Sketch, Auto Abstraction and Drawing Order all call it, so they judge a
sketch with the very loss that optimised it.
"""

from __future__ import annotations

from typing import Dict, Optional

from comfy_api.latest import io

# widget name -> (settings field, widget value meaning "not set": the preset's value, or off)
WIDGETS = {
    "remove_background": ("background_removal", None),
    "loss_model": ("clip_model", None),
    "learning_rate": ("lr", None),
    "augmentations": ("num_augs", -1),
    "iterations": ("iterations", 0),
    "seeds": ("seeds", 0),
    "framing": ("framing", "preset"),
    "text": ("text", ""),
    "pen_width": ("pen_width", 0.0),
    "segments": ("num_segments", None),
    "method": ("abstraction_method", None),
    "fidelity": ("auto_strokes", None),
    "pretrained": ("clip_pretrained", None),
    "seed_trial": ("seed_trial", -1.0),
    "plateau": ("plateau", -1.0),
}
UNSET_HELP = {
    0: "0 uses the preset's value.",
    -1: "-1 uses the preset's value.",
    "preset": "preset: the preset's (paper stretch, fast pad).",
}

# Optional inputs that define the loss and the loop, in the order Optimize Sketch shows them after its
# required ones; Auto Abstraction and Drawing Order take the same (their older inputs first).
LOOP_WIDGETS = (
    "loss",
    "trace_weight",
    "text",
    "text_weight",
    "optimize_width",
    "optimize_opacity",
    "color_from_image",
    "optimize_color",
    "pen_width",
)


# Optional inputs that spend less on a run (the seed trial and the plateau stop; -1: the preset's value),
# after the loop inputs on Optimize Sketch and last on the one-box nodes.
SPEED_WIDGETS = ("seed_trial", "plateau")


# The ViT block input (last on Optimize Sketch, Auto Abstraction and Drawing Order): with a ViT loss model the
# geometric term compares the patch tokens of that one block (scene mode's background loss); "default" keeps
# the encoder's own layers.
VIT_BLOCK_DEFAULT = "default"


def vit_block_options():
    from clipasso.settings import SCENE_FIDELITIES, SCENE_VIT_BLOCKS

    return [VIT_BLOCK_DEFAULT, *SCENE_FIDELITIES, *(str(i) for i in range(SCENE_VIT_BLOCKS))]


def vit_block_input():
    from clipasso.settings import SCENE_FIDELITIES

    words = ", ".join(f"{w} = block {b}" for w, b in SCENE_FIDELITIES.items())
    return io.Combo.Input(
        "vit_block",
        options=vit_block_options(),
        default=VIT_BLOCK_DEFAULT,
        optional=True,
        tooltip="With a ViT loss model (e.g. ViT-B-32 in Load CLIPasso Models): the geometric loss compares the "
        f"patch tokens of this one block, as scene mode does for the background ({words}; shallow blocks draw "
        "literally, deep ones loosely). default: the encoder's usual layers. Not used with loss 'trace'.",
    )


def vit_block_weights(value, encoder) -> Optional[Dict[str, float]]:
    """The ``layer_weights`` of a ``vit_block`` widget value for ``encoder`` (None: "default", keep the
    encoder's layers); a `NodeInputError` when the encoder is no ViT or lacks the block."""
    from clipasso.settings import SCENE_FIDELITIES

    from .common import NodeInputError

    text = str(value if value is not None else VIT_BLOCK_DEFAULT).strip().lower()
    if text in ("", VIT_BLOCK_DEFAULT, "-1"):
        return None
    if text in SCENE_FIDELITIES:
        block = SCENE_FIDELITIES[text]
    elif text.isdigit():
        block = int(text)
    else:
        raise NodeInputError(
            f"vit_block must be default, {', '.join(SCENE_FIDELITIES)} or a block number; got {value!r}"
        )
    if not getattr(encoder, "is_vit", False):
        name = getattr(encoder, "name", "the loss model")
        raise NodeInputError(
            f"vit_block {value!r} needs a ViT loss model, but {name!r} is not one: choose a ViT (e.g. ViT-B-32) as "
            "loss_model in Load CLIPasso Models, or set vit_block to default"
        )
    blocks = len(encoder.visual.transformer.resblocks)
    if block >= blocks:
        raise NodeInputError(
            f"vit_block {value!r} is block {block}, but the loss model {encoder.name!r} has blocks 0-{blocks - 1}; "
            f"choose a block in 0-{blocks - 1}"
        )
    return {f"block{block}": 1.0}


def field_of(widget: str) -> str:
    return WIDGETS.get(widget, (widget, None))[0]


def setting_input(
    widget: str,
    *,
    optional: bool = False,
    default=None,
    low=None,
    high=None,
    unset=None,
    tooltip: Optional[str] = None,
    preset_value: bool = True,
    field: Optional[str] = None,
    **extra,
):
    """The ComfyUI input of one settings field, under its widget name. ``unset`` (a widget value, for
    example 0 for iterations) stands for the preset's value and becomes the default (``preset_value=False``:
    a node without a preset, whose widget always holds the value); ``default`` /
    ``low`` / ``high`` narrow what a node offers (only where a node must, e.g. the preset default);
    ``options`` offers a free-text field as a list (model names found on disk) or a subset of its choices."""
    from clipasso.settings import PRESETS, field_option

    name = field or field_of(widget)  # field: a widget whose name means another setting on this node
    opt = field_option(name)
    sentinel = (WIDGETS.get(widget, (name, None))[1] if field is None else None) if unset is None else unset
    if not preset_value:  # this node has no preset: the widget holds the value itself
        sentinel = None
    value = PRESETS["paper"][name] if default is None else default
    help_text = tooltip or (opt.help[0].upper() + opt.help[1:] + ".")
    if sentinel is not None and default is None:
        value = sentinel
        if sentinel in UNSET_HELP:
            help_text += " " + UNSET_HELP[sentinel]
    options = extra.pop("options", None)
    kw = dict(optional=optional, tooltip=help_text, **extra)
    if options is not None:  # a free-text field offered as a list (e.g. the model names found)
        return io.Combo.Input(widget, options=options, default=value, **kw)
    if opt.choices is not None:
        options = list(opt.choices) if sentinel is None else [sentinel, *opt.choices]
        return io.Combo.Input(widget, options=options, default=value, **kw)
    if opt.kind == "bool":
        return io.Boolean.Input(widget, default=bool(value), **kw)
    if opt.kind == "str":
        return io.String.Input(widget, default=value or "", multiline=False, **kw)
    lo = low if low is not None else opt.low
    hi = high if high is not None else opt.high
    step = opt.step or 0.01
    if opt.kind != "int" and lo is not None and opt.low_open and lo == opt.low:
        lo = lo + step / 10  # the widget's smallest value above an open bound
    if sentinel is not None and isinstance(sentinel, (int, float)):
        lo = min(sentinel, lo) if lo is not None else sentinel  # the "not set" value (pen width 0 = off)
    if opt.kind == "int":
        limits = {k: int(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
        return io.Int.Input(widget, default=int(value), **limits, **kw)
    limits = {k: float(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
    return io.Float.Input(widget, default=float(value or 0.0), step=step, **limits, **kw)


NODE_PRESET = "fast"  # the nodes start from the CPU-friendly preset


def preset_input(tooltip: Optional[str] = None):
    from clipasso.settings import PRESET_HELP, PRESET_NAMES

    options = [NODE_PRESET] + [p for p in PRESET_NAMES if p != NODE_PRESET]
    return io.Combo.Input("preset", options=options, default=NODE_PRESET, tooltip=tooltip or PRESET_HELP + ".")


def widget_default(widget: str):
    """The value a widget shows by default (its field's, or its "not set" sentinel)."""
    from clipasso.settings import PRESETS

    name, sentinel = WIDGETS.get(widget, (widget, None))
    return sentinel if sentinel is not None else PRESETS["paper"][name]


def loop_inputs(names=LOOP_WIDGETS):
    """The optional loss / loop inputs (see `LOOP_WIDGETS`)."""
    return [setting_input(n, optional=True) for n in names]


def settings_overrides(**widgets) -> Dict:
    """Widget values -> settings fields (unset sentinels, empty text and pen width 0 dropped)."""
    from clipasso.settings import FIELD_STAGE, field_option

    out = {}
    for widget, value in widgets.items():
        name, sentinel = WIDGETS.get(widget, (widget, None))
        if name not in FIELD_STAGE or value is None:
            continue
        if isinstance(value, str):
            value = value.strip()
        if sentinel is not None and value == sentinel:
            continue
        kind = field_option(name).kind
        if kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


def node_settings(preset: Optional[str] = None, **widgets):
    """The validated `SketchSettings` of a node's widget values, from ``preset`` (a node without a preset:
    the field defaults); fields that are not widgets (models_dir, device) may be given by name too. A value
    that cannot work is a `NodeInputError` naming it."""
    from clipasso.settings import SettingsError, SketchSettings

    from .common import NodeInputError

    try:
        base = SketchSettings.from_preset(preset) if preset is not None else SketchSettings()
        return base.replace(**settings_overrides(**widgets)).validate()
    except SettingsError as exc:
        raise NodeInputError(str(exc)) from None


def loop_config(models, preset: str = "fast", **widgets):
    """(loss encoder or None, device, `OptimizeConfig`) of a node's widget values, the same for every node
    that optimises or measures sketches. Needs a CLIP model unless loss is 'trace'. ``vit_block`` (a
    `vit_block_input` value) puts the geometric term on one block of a ViT loss model (`vit_block_weights`)."""
    from clipasso.settings import LOSS_MODES, SettingsError, SketchSettings

    from .common import NodeInputError, compute_device

    vit_block = widgets.pop("vit_block", VIT_BLOCK_DEFAULT)
    over = settings_overrides(**widgets)
    loss = over.get("loss", "clip")
    if loss not in LOSS_MODES:
        raise NodeInputError(f"loss must be one of {', '.join(LOSS_MODES)}; got {loss!r}")
    if models is None and loss != "trace":
        raise NodeInputError(
            f"loss {loss!r} needs a CLIP model: connect Load CLIPasso Models, or choose loss 'trace', which needs none"
        )
    encoder = models.loss if models is not None and loss != "trace" else None
    if encoder is None:  # the CLIP-only weights mean nothing without the encoder
        for name in ("semantic_weight", "geometric_weight", "mixed_precision"):
            over.pop(name, None)
    else:
        from clipasso.device import precision_label

        over["mixed_precision"] = precision_label(models.autocast_dtype)  # the node's dtype as the settings' word
        over["compile"] = getattr(models, "compile", "auto")
        weights = vit_block_weights(vit_block, encoder)
        if weights is not None:
            over["layer_weights"] = weights
    try:
        settings = SketchSettings.from_preset(preset, **over)
        config = settings.optimize_config().validate()
    except SettingsError as exc:
        raise NodeInputError(str(exc)) from None
    return encoder, (models.device if models is not None else compute_device()), config
