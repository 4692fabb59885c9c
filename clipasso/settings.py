"""Every user-facing option of a CLIPasso sketch, defined once.

One frozen dataclass per stage of the pipeline, combined in `SketchSettings`:

    PrepareSettings    the picture on the square canvas: canvas side, framing, background removal
    ModelSettings      which CLIP encoders, from where, on which device
    PlaceSettings      saliency map and stroke initialisation
    ObjectiveSettings  the loss: its named, weighted terms and their augmentations
    OptimizerSettings  the Adam loop: steps, learning rate, styled strokes, re-seeding
    SelectSettings     best-of-N seeds, automatic abstraction, drawing order

Each field carries its default, its range or choices and a one-line help text (`option`); the CLI (`clipasso.cli`) and the node inputs (`nodes/inputs.py`) are
generated from these fields, and `SketchSettings.validate` is the only validator. The field defaults
are the original CLIPasso's (run_object_sketching.py); a preset (`PRESETS`) is data: the fields it
changes.

    s = SketchSettings.from_preset("fast", strokes=8, loss="trace")
    s.strokes, s.place.strokes            # 8, 8: fields are reachable from the whole and from their stage
    s.replace(seeds=1).validate()
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from .device import COMPILE_MODES, DEVICES, PRECISIONS, precision_word  # noqa: F401 - the words, defined there once
from .errors import ClipassoError

DEFAULT_PRETRAINED = "openai"
MODELS_DIR_ENV = "CLIPASSO_MODELS_DIR"  # folders of weights files, os.pathsep-separated (clipasso.models)
DEFAULT_LOSS_MODEL = "RN101"
DEFAULT_SALIENCY_MODEL = "ViT-B-32"
FRAMINGS = ("stretch", "fix-scale", "pad")
LOSS_MODES = ("clip", "trace", "clip+trace")
TRACE_REFERENCES = ("edges", "image")
RENDERERS = ("auto", "torch", "diffvg")  # auto: torch (clipasso.render.raster)
DEFAULT_TRACE_SIGMAS = (1.0, 2.0, 4.0, 8.0)
SALIENCY_METHODS = ("clip-attention", "clip-relevancy", "timm-vit", "mask", "none")
ABSTRACTION_METHODS = ("prune", "grow")
MATTING_MODELS = (  # rembg's model names (a static list: rembg is not imported to know them)
    "u2netp",
    "u2net",
    "u2net_human_seg",
    "silueta",
    "isnet-general-use",
    "isnet-anime",
    "birefnet-general",
    "birefnet-general-lite",
    "birefnet-portrait",
    "birefnet-dis",
    "birefnet-hrsod",
    "birefnet-cod",
    "birefnet-massive",
    "bria-rmbg",
)
SEED_SPACING = 1000  # the original ran seeds 0, 1000, 2000
# scene mode (clipasso.scene): the fidelity words and the ViT-B/32 blocks they stand for (CLIPascene's 2, 8, 11)
SCENE_FIDELITIES = {"literal": 2, "balanced": 8, "loose": 11}
SCENE_VIT_BLOCKS = 12  # blocks of ViT-B/32 (a smaller ViT is checked against its own count when the loss is built)


def scene_fidelity_value(value):
    """``scene_fidelity`` as the settings keep it: a block number given as text ("8") becomes the number."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value.strip().lower() if isinstance(value, str) else value


DEFAULT_FIDELITY = 0.9  # automatic abstraction keeps 90 % of the loss improvement unless told otherwise
MAX_SEEDS = 64


class SettingsError(ClipassoError, ValueError):
    """A setting that cannot work; the message names it and says what to use."""


def diffvg_missing_message() -> str:
    """How to get pydiffvg, for the errors that ask for it."""
    return (
        "the diffvg renderer needs pydiffvg, which is not installed (it is not on PyPI). Build it from "
        "diffvg's source (https://github.com/BachiLi/diffvg; CPU only: apt-get install libthrust-dev, "
        "pybind11's source as pybind11/ inside the tree, then DIFFVG_CUDA=0 python setup.py install and "
        "pip install svgpathtools cssutils; this repository's tests/diffvg_build.py does exactly that), "
        "or use the renderer torch (the default, nothing to compile)"
    )


# --------------------------------------------------------------------------- one option


@dataclass(frozen=True)
class Option:
    """What the front-ends need to know of one field besides its default."""

    help: str
    choices: Optional[Tuple] = None
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # value > low, not >= low
    high_open: bool = False  # value < high, not <= high
    meaning: str = ""  # what a value is, for messages ("a fidelity in (0, 1], e.g. 0.9")
    unit: str = ""
    above: str = ""  # why larger values are refused
    flag: Optional[str] = None  # CLI flag (None: --field-name; "" : no CLI option)
    off_help: Optional[str] = None  # help of the CLI flag that turns a default-on option off
    metavar: Optional[str] = None
    step: Optional[float] = None  # node widget step
    kind: str = "any"  # int, float, bool, str, choice, any
    canonical: Optional[Callable[[Any], Any]] = None  # older words -> today's (e.g. device.precision_word)

    def problem(self, label: str, value) -> Optional[str]:
        """Why ``value`` is not allowed for the option shown as ``label``, or None."""
        if value is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                return f"{label} must be one of {', '.join(map(str, self.choices))}; got {value!r}"
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"{label} must be true or false; got {value!r}"
        if self.kind == "str":
            return None if isinstance(value, str) else f"{label} must be a string (text); got {value!r}"
        if self.kind in ("int", "float"):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (self.kind == "int" and not float(value).is_integer())
            ):
                if self.meaning:
                    return f"{label} must be {self.meaning}; got {value!r}"
                what = "a whole number" if self.kind == "int" else "a number"
                return f"{label} must be {what}{self._range_text()}; got {value!r}"
            return self._bound_problem(label, value)
        return None

    def _range_text(self) -> str:
        if self.low is None and self.high is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        if self.high is None:
            return f" {'>' if self.low_open else '>='} {fmt(self.low)}{unit}"
        return f" between {fmt(self.low)} and {fmt(self.high)}{unit}"

    def _bound_problem(self, label, value) -> Optional[str]:
        unit = f" {self.unit}" if self.unit else ""
        if not math.isfinite(float(value)):
            if self.meaning:
                return f"{label} must be {self.meaning}; got {value}"
            return f"{label} must be a finite number{self._range_text()}; got {value}"
        outside = (self.high is not None and (value > self.high or (self.high_open and value >= self.high))) or (
            self.low is not None and (value < self.low or (self.low_open and value <= self.low))
        )
        if outside and self.meaning:
            return f"{label} must be {self.meaning}; got {fmt(value)}"
        if self.high is not None and self.high_open and value >= self.high:
            return f"{label} must be below {fmt(self.high)}{unit}; got {fmt(value)}"
        if self.high is not None and value > self.high:
            return f"{label} must be at most {fmt(self.high)}{unit}; got {fmt(value)}" + (
                f" ({self.above})" if self.above else ""
            )
        if self.low is not None and (value < self.low or (self.low_open and value <= self.low)):
            top = f" (at most {fmt(self.high)}{unit})" if self.high is not None else ""
            if self.low_open:
                return f"{label} must be above {fmt(self.low)}{top}; got {fmt(value)}"
            if self.low == 0:
                return f"{label} must be 0 or more{top}; got {fmt(value)}"
            if self.low in (0, 1) or self.high is None:
                return f"{label} must be at least {fmt(self.low)}{top}; got {fmt(value)}"
            return f"{label} must be between {fmt(self.low)} and {fmt(self.high)}{unit}; got {fmt(value)}"
        return None


def fmt(value) -> str:
    """A bound as people write it: 2147418111, not 2.14742e+09; 0.5 stays 0.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def option(default, help: str, **meta) -> Any:
    """A settings field: its default and its `Option`."""
    kind = meta.pop("kind", None)
    if kind is None:
        kind = (
            "choice"
            if meta.get("choices") is not None
            else "bool"
            if isinstance(default, bool)
            else "int"
            if isinstance(default, int)
            else "float"
            if isinstance(default, float)
            else "str"
            if isinstance(default, str)
            else "any"
        )
    opt = Option(help=help, kind=kind, **meta)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"option": opt})
    return field(default=default, metadata={"option": opt})


def option_of(cls_or_obj, name: str) -> Option:
    for f in fields(cls_or_obj):
        if f.name == name:
            return f.metadata["option"]
    raise KeyError(name)


class _Stage:
    """Shared behaviour of the stage dataclasses. A stage function takes its stage's settings object
    (``None``: the defaults) and keyword overrides of its fields: ``PlaceSettings.of(settings, width=2.0)``."""

    @classmethod
    def of(cls, settings=None, *, label=None, **overrides):
        """This stage's settings, validated: from ``settings`` (None: the defaults; this stage's object; or a
        whole `SketchSettings`, whose stage is taken) with ``overrides`` (fields of this stage) on top.
        ``label``: how messages name a field (a stage function may call a field by its own argument name)."""
        if settings is None:
            settings = cls()
        elif isinstance(settings, SketchSettings):
            settings = settings.optimize_config() if cls is OptimizeConfig else getattr(settings, _STAGE_OF[cls])
        if not isinstance(settings, cls):
            raise SettingsError(
                f"settings must be a {cls.__name__} (or a SketchSettings); got {type(settings).__name__}"
            )
        label = label or (lambda name: name)
        return settings.replace(**overrides).validate(label) if overrides else settings.validate(label)

    def __post_init__(self):
        for f in fields(self):  # an older word (an alias) becomes today's, whatever way the value came in
            canonical = f.metadata["option"].canonical
            if canonical is not None:
                object.__setattr__(self, f.name, canonical(getattr(self, f.name)))

    def replace(self, **changes):
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise SettingsError(
                f"{type(self).__name__} has no setting(s) {', '.join(unknown)}; its settings are: "
                f"{', '.join(f.name for f in fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    def problems(self, label=lambda name: name) -> Iterator[str]:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "seeds" and isinstance(value, (list, tuple)):
                continue  # a list of seeds: checked by SketchSettings.problems
            msg = f.metadata["option"].problem(label(f.name), value)
            if msg:
                yield msg
        yield from self.rules(label)

    def rules(self, label) -> Iterator[str]:
        """Problems between fields of this stage (each stage adds its own)."""
        return iter(())

    def validate(self, label=lambda name: name):
        """Raise `SettingsError` with the first problem; returns self when there is none."""
        for msg in self.problems(label):
            raise SettingsError(msg)
        return self


# --------------------------------------------------------------------------- the stages


@dataclass(frozen=True)
class PrepareSettings(_Stage):
    canvas: int = option(
        224,
        "working canvas side in pixels; 224 is CLIP's input, larger (e.g. 448) draws finer lines, "
        "downsampled for the loss",
        low=64,
        high=1024,
        unit="pixels",
        step=8,
        above="224 is CLIP's input; larger canvases only render finer",
        metavar="PX",
    )
    framing: str = option(
        "stretch",
        "how the picture goes onto the square canvas: stretch (the original's default; a "
        "stretched sketch comes back in the picture's shape), fix-scale (the original's "
        "fix_scale=1: a white square, 10 picture pixels a side), pad (a white square, "
        "10/224 margin)",
        choices=FRAMINGS,
    )
    background_removal: bool = option(
        True,
        "cut the object out with rembg's u2netp first (bundled; the picture's own "
        "alpha is used instead when it has one)",
        flag="--no-background-removal",
        off_help="do not remove the background",
    )
    matting_model: str = option(
        "u2netp",
        "rembg model for background removal: u2netp (the small U2-Net, 4.6 MB, "
        "ships with clipasso so it works offline), u2net (the full U2-Net the "
        "original used, 176 MB, downloaded by rembg or put in the models folder), "
        "or another rembg model: " + ", ".join(MATTING_MODELS[2:]),
        metavar="NAME",
    )
    scene: bool = option(
        False,
        "sketch the whole scene in two layers instead of cutting the object out: the object (from the "
        "matte) and the background with the object's hole inpainted, each with its own strokes and loss, "
        "then a short joint pass on the whole picture (docs/scenes.md)",
        flag="--scene",
    )


@dataclass(frozen=True)
class ModelSettings(_Stage):
    clip_model: str = option(DEFAULT_LOSS_MODEL, "open_clip model of the loss", metavar="NAME")
    clip_pretrained: str = option(DEFAULT_PRETRAINED, "pretrained tag of the loss model", metavar="TAG")
    clip_weights: Any = option(None, "explicit weights file of the loss model", metavar="FILE")
    saliency_model: str = option(
        DEFAULT_SALIENCY_MODEL,
        "open_clip ViT of the saliency map (or a timm model with saliency timm-vit)",
        metavar="NAME",
    )
    saliency_pretrained: str = option(
        DEFAULT_PRETRAINED, "pretrained tag of the saliency model", flag="", metavar="TAG"
    )
    saliency_weights: Any = option(None, "explicit weights file of the saliency model", metavar="FILE")
    models_dir: Any = option(
        None,
        "folder of weights files (CLIP, matting), searched before the caches; $CLIPASSO_MODELS_DIR too",
        metavar="DIR",
    )
    allow_download: bool = option(
        True,
        "download missing weights on first use",
        flag="--offline",
        off_help="never download weights; fail with where to put them",
    )
    device: str = option("auto", "compute device: auto picks cuda, then mps, then cpu", choices=DEVICES)


@dataclass(frozen=True)
class PlaceSettings(_Stage):
    strokes: int = option(
        16,
        "number of strokes (the abstraction level)",
        low=1,
        high=1024,
        unit="strokes",
        above="every stroke is rendered for every seed on every step; 100000 strokes took 7 GB "
        "and 5 min for a single iteration",
        metavar="N",
    )
    saliency: str = option(
        "clip-attention",
        "where strokes start: clip-attention (the original), clip-relevancy "
        "(the paper), timm-vit (a timm ViT such as DINO), mask (inside the object "
        "mask, no model) or none (uniformly random)",
        choices=SALIENCY_METHODS,
        metavar="METHOD",
    )
    saliency_text: Optional[str] = option(
        None,
        "prompt for clip-relevancy (relevancy to this text instead of to the picture)",
        metavar="PROMPT",
        kind="str",
    )
    use_edges: bool = option(
        True,
        "multiply the saliency by the XDoG ink map (the original's)",
        flag="--no-xdog",
        off_help="do not restrict start points to the XDoG edge map (the paper intersects them)",
    )
    temperature: float = option(
        0.3,
        "softmax temperature of the start-point sampling (lower: more concentrated)",
        low=0,
        high=100,
        low_open=True,
        step=0.01,
        above="the start points become uniformly random long before that",
        metavar="T",
    )
    num_segments: int = option(1, "cubic Bezier segments per stroke", low=1, high=16, flag="--segments", metavar="N")
    background_strokes: int = option(
        64,
        "scene mode: strokes of the background layer (CLIPascene's 64; the object keeps --strokes)",
        low=1,
        high=1024,
        unit="strokes",
        above="as strokes",
        metavar="N",
    )
    width: float = option(
        1.5,
        "stroke half-width in canvas pixels (1.5 draws CLIPasso's 3 px line)",
        low=0,
        high=50,
        low_open=True,
        flag="",
        meaning="a half-width in canvas pixels in (0, 50], e.g. 1.5 (a 3 px line)",
    )


@dataclass(frozen=True)
class ObjectiveSettings(_Stage):
    """The loss terms: geometric (CLIP intermediate layers) + semantic (embedding) [+ text] [+ trace]."""

    loss: str = option(
        "clip",
        "clip: the CLIPasso loss; trace: a weights-free image-space loss (no CLIP model); clip+trace: both added",
        choices=LOSS_MODES,
    )
    layer_weights: Optional[Dict[str, float]] = option(
        None, "weights of the geometric layers (None: layer2 and layer3 of a ResNet, 1 each)", flag=""
    )
    geometric_weight: float = option(
        1.0,
        "scale of the geometric term (intermediate encoder layers; CLIPasso: 1.0 on ResNet layer2 and layer3)",
        low=0,
        high=100,
        step=0.1,
        metavar="W",
    )
    semantic_weight: float = option(
        0.1,
        "weight of the semantic term (final CLIP embedding; CLIPasso: 0.1)",
        low=0,
        high=100,
        step=0.01,
        metavar="W",
    )
    text: Optional[str] = option(
        None,
        "text guidance: a short description such as 'a cat, side view'; the sketch is "
        "nudged toward it through the loss model's text tower",
        metavar="PROMPT",
        kind="str",
    )
    text_weight: float = option(
        0.3,
        "weight of the text term: 0.3 nudges, 1 and more let the words win over the "
        "picture (bench/studies/text_guidance.py)",
        low=0,
        high=100,
        step=0.01,
        above="1 and more already let the words win over the picture",
        metavar="W",
    )
    trace_weight: float = option(
        1.0,
        "weight of the trace term with loss clip+trace",
        low=0,
        high=100,
        step=0.1,
        above="the weight is relative to the CLIP loss, which is about 1",
        metavar="W",
    )
    trace_sigmas: Tuple[float, ...] = option(
        DEFAULT_TRACE_SIGMAS, "blur radii (pixels) at which the trace loss compares ink", flag=""
    )
    trace_reference: str = option(
        "edges",
        "what the trace loss traces: the target's XDoG lines or its grey levels",
        choices=TRACE_REFERENCES,
        flag="",
    )
    num_augs: int = option(
        4,
        "augmented views (random perspective + crop) per step and candidate; 0 compares the clean view only",
        low=0,
        high=64,
        metavar="N",
    )
    aug_pool: int = option(
        0,
        "draw the augmented views from a fixed pool of this many, whose target features are "
        "computed once (0: fresh views every step, the original)",
        low=0,
        high=1024,
        flag="",
    )
    pool_seed: int = option(0, "seed of the augmentation pool", low=0, flag="")
    distortion: float = option(0.5, "perspective distortion of the augmentations", low=0, high=1, flag="")
    crop_scale: float = option(0.8, "area share of the augmentations' crop", low=0, high=1, low_open=True, flag="")
    distance: str = option("l2", "distance of the geometric term", choices=("l2", "l1"), flag="")
    mixed_precision: str = option(
        "auto",
        "encoder precision: auto (fp16 on CUDA; bf16 on a CPU with native bf16, "
        "i.e. avx512_bf16 or AMX, much faster at nearly the same loss, see "
        "docs/benchmarks.md; else fp32), fp32, fp16 (CUDA only; a CPU runs fp32), "
        "bf16 ('off' is still read as fp32). The eval loss that keeps the best state "
        "and picks the winner is fp32 under bf16",
        choices=PRECISIONS,
        canonical=precision_word,
        flag="--precision",
    )
    compile: str = option(
        "auto",
        "compile the CLIP encoder's training step with torch.compile: auto (where it pays back: a long "
        "run, or a cache this machine already compiled; the first compile takes about a minute and is kept "
        "in ~/.cache/clipasso/compiled, $CLIPASSO_COMPILE_CACHE), on, off (eager). Needs a C++ compiler on "
        "CPU, triton on CUDA; without one the run goes on eager and says why",
        choices=COMPILE_MODES,
    )
    scene_fidelity: Any = option(
        "balanced",
        "scene mode: how literally the background is drawn, as the block of CLIP ViT-B/32 (0-11) whose "
        "patch tokens the background's geometric loss compares: literal (2), balanced (8), loose (11), "
        "or a block number (CLIPascene's fidelity axis)",
        metavar="LEVEL",
        kind="any",
        canonical=scene_fidelity_value,
    )

    @property
    def uses_clip(self) -> bool:
        return self.loss != "trace"

    @property
    def scene_block(self) -> int:
        """The ViT block index of ``scene_fidelity`` (a word or a number)."""
        return int(SCENE_FIDELITIES.get(self.scene_fidelity, self.scene_fidelity))

    def rules(self, label):
        if self.text is not None and isinstance(self.text, str) and self.text.strip() and self.loss == "trace":
            yield f"a text prompt ({label('text')}) needs the CLIP loss; use loss 'clip' or 'clip+trace'"
        if self.loss == "clip+trace" and self.trace_weight == 0:
            yield f"{label('trace_weight')} must be a number > 0 with loss clip+trace (1.0 by default); got 0"
        try:
            sig = [float(v) for v in self.trace_sigmas]
        except (TypeError, ValueError):
            sig = []
        if not sig or any(not math.isfinite(v) or v <= 0 for v in sig):
            yield (
                f"{label('trace_sigmas')} must be positive blur radii in pixels, e.g. {DEFAULT_TRACE_SIGMAS}; "
                f"got {self.trace_sigmas!r}"
            )
        if isinstance(self.num_augs, int) and isinstance(self.aug_pool, int) and 0 < self.aug_pool < self.num_augs:
            yield (
                f"{label('num_augs')} ({self.num_augs}) cannot exceed the augmentation pool "
                f"({label('aug_pool')}, {self.aug_pool}); use fewer views or a larger pool"
            )
        fid = self.scene_fidelity
        if fid not in SCENE_FIDELITIES and not (
            isinstance(fid, int) and not isinstance(fid, bool) and 0 <= fid < SCENE_VIT_BLOCKS
        ):
            yield (
                f"{label('scene_fidelity')} must be literal, balanced, loose or a ViT-B/32 block number 0-"
                f"{SCENE_VIT_BLOCKS - 1} (shallow blocks draw literally, deep ones loosely); got {fid!r}"
            )


@dataclass(frozen=True)
class OptimizerSettings(_Stage):
    iterations: int = option(
        2000,
        "optimisation steps",
        low=0,
        high=100000,
        unit="steps",
        above="the paper uses 2000; stop a long run with Ctrl+C, which keeps the best sketch",
        metavar="N",
    )
    lr: float = option(
        1.0,
        "Adam step size in canvas pixels (CLIPasso: 1.0)",
        low=0,
        high=100,
        low_open=True,
        unit="pixels per step",
        step=0.01,
        above="a step that large throws the points off the canvas and the sketch never improves on "
        "its starting strokes; CLIPasso uses 1.0",
        metavar="LR",
    )
    eval_interval: int = option(
        10, "steps between evaluations of the clean-view loss (the best state is kept)", low=1, high=100000, flag=""
    )
    callback_interval: int = option(10, "steps between progress callbacks", low=1, flag="")
    optimize_width: bool = option(False, "also optimise each stroke's width (lines of 1 to 8 px)")
    optimize_opacity: bool = option(False, "also optimise each stroke's opacity (0.05 to 1)")
    color_from_image: bool = option(False, "colour each stroke like the picture under it")
    optimize_color: bool = option(False, "also optimise each stroke's colour")
    pen_width: Optional[float] = option(
        None,
        "draw every stroke with this full line width in canvas pixels (3 = CLIPasso's pen), whatever was optimised",
        low=0,
        high=100,
        low_open=True,
        unit="canvas pixels",
        above="3 is CLIPasso's pen",
        metavar="PX",
        kind="float",
        step=0.1,
    )
    width_range: Tuple[float, float] = option((0.5, 4.0), "bounds of optimised half-widths (canvas px)", flag="")
    min_opacity: float = option(0.05, "lowest optimised opacity", low=0, high=1, low_open=True, flag="")
    width_lr: float = option(0.1, "learning rate of the widths", low=0, low_open=True, flag="")
    opacity_lr: float = option(0.05, "learning rate of the opacities", low=0, low_open=True, flag="")
    color_lr: float = option(0.02, "learning rate of the colours", low=0, low_open=True, flag="")
    background: Tuple[float, float, float] = option((1.0, 1.0, 1.0), "canvas colour the strokes are drawn on", flag="")
    renderer: str = option(
        "auto",
        "rasteriser that draws the strokes while optimising: torch (built in; auto picks it) or diffvg "
        "(pydiffvg, the original CLIPasso's renderer, when it is installed; much slower)",
        choices=RENDERERS,
    )
    reseed_interval: Optional[int] = option(
        None,
        "move strokes that shrank to dots every N steps to where ink is "
        "missing (default: every 50 with a trace loss, never with CLIP "
        "alone; 0 = off)",
        low=0,
        high=100000,
        unit="steps",
        above="0 turns re-seeding off",
        flag="--reseed",
        metavar="N",
        kind="int",
    )
    reseed_min_length: float = option(
        3.0, "control polygon length (px at 224) below which a stroke is a dot", low=0, low_open=True, flag=""
    )
    reseed_until: float = option(0.7, "share of the run during which re-seeding happens", low=0, high=1, flag="")
    seed_trial: float = option(
        0.0,
        "share of the iterations that every seed runs; then only the seed_survivors "
        "best (lowest eval loss) go on to the end (0: every seed runs all iterations, "
        "as in the original)",
        low=0,
        high=1,
        high_open=True,
        step=0.05,
        metavar="SHARE",
        meaning="a share of the iterations in [0, 1), e.g. 0.2",
    )
    seed_survivors: int = option(
        1,
        "seeds that go on after seed_trial",
        low=1,
        high=MAX_SEEDS,
        unit="seeds",
        metavar="N",
        above="at most as many as run",
    )
    plateau: float = option(
        0.0,
        "stop early when no running seed's best eval loss improved by more than this share "
        "over the last plateau_window steps (0: always run all iterations)",
        low=0,
        high=1,
        high_open=True,
        step=0.001,
        metavar="SHARE",
        meaning="a share in [0, 1), e.g. 0.01 (1 %)",
    )
    plateau_window: int = option(
        200, "steps over which plateau measures the improvement", low=1, high=100000, unit="steps", metavar="N"
    )
    joint_iterations: Optional[int] = option(
        None,
        "scene mode: steps of the joint pass that moves both layers' strokes together against the whole "
        "picture after each layer was optimised on its own (default a tenth of the iterations; 0 = none)",
        low=0,
        high=100000,
        unit="steps",
        above="it is a short pass after the layers' own runs",
        metavar="N",
        kind="int",
    )

    def rules(self, label):
        if self.renderer == "diffvg":
            try:
                import pydiffvg  # noqa: F401
            except Exception:  # noqa: BLE001 - any import failure means "not available"
                yield f"{label('renderer')} diffvg: {diffvg_missing_message()}"
        try:
            lo, hi = (float(v) for v in self.width_range)
        except (TypeError, ValueError):
            lo = hi = float("nan")
        if not (0 < lo <= hi and math.isfinite(hi)):
            yield (
                f"{label('width_range')} (the width range of optimised strokes) must be two half-widths in "
                f"canvas px, 0 < min <= max; got {self.width_range!r}"
            )


@dataclass(frozen=True)
class SelectSettings(_Stage):
    seeds: Any = option(
        3,
        "candidates optimised together; the lowest loss wins (in Python also a list of seeds)",
        low=1,
        high=MAX_SEEDS,
        unit="candidates",
        above="all seeds are optimised together as one batch",
        kind="int",
        metavar="N",
    )
    seed: int = option(
        0,
        "first seed; the candidates use seed, seed+1000, seed+2000 and so on",
        low=0,
        high=2**31 - 1 - SEED_SPACING * MAX_SEEDS,
        above="candidates use seed, seed+1000, ..., which must stay a 31-bit seed",
        metavar="N",
    )
    auto_strokes: Optional[float] = option(
        None,
        "let the sketch choose its stroke count: keep this fidelity (0-1] of the loss improvement over an empty canvas",
        low=0,
        high=1,
        low_open=True,
        metavar="FIDELITY",
        kind="float",
        meaning="a number in (0, 1] (the share of the loss improvement to keep), e.g. 0.9",
    )
    abstraction_method: str = option(
        "prune",
        "how auto_strokes searches the count: prune (optimise max_strokes, "
        "remove the least useful one at a time) or grow (optimise "
        "start_strokes, add one at a time where ink helps most)",
        choices=ABSTRACTION_METHODS,
        flag="--abstraction",
    )
    max_strokes: Optional[int] = option(
        None,
        "the generous budget auto_strokes prunes from, or the most strokes growing may reach (default twice strokes)",
        low=2,
        high=1024,
        unit="strokes",
        above="as strokes",
        metavar="N",
        kind="int",
    )
    prune_iterations: int = option(
        20,
        "optimisation steps after each removed stroke (0 = none)",
        low=0,
        high=10000,
        unit="steps",
        above="they run after every removed stroke",
        metavar="N",
    )
    start_strokes: int = option(
        2,
        "grow: strokes optimised before growing starts",
        low=1,
        high=1023,
        unit="strokes",
        above="as strokes",
        metavar="N",
    )
    grow_iterations: int = option(
        20,
        "grow: optimisation steps of all strokes after each added stroke (0 = none)",
        low=0,
        high=10000,
        unit="steps",
        above="they run after every added stroke",
        metavar="N",
    )
    min_gain: float = option(
        0.01,
        "grow: stop when each of the last 2 strokes lowered the loss by less than this "
        "share of the total improvement so far (0 grows to max_strokes)",
        low=0,
        high=1,
        high_open=True,
        metavar="F",
        step=0.001,
        meaning="a share in [0, 1), e.g. 0.01",
    )
    drawing_order: bool = option(
        False, "order the strokes so that every prefix is the best sketch of its size", flag="--order"
    )


FLOW_METHODS = ("tvl1", "ilk", "none")  # scikit-image's TV-L1 and iterative Lucas-Kanade; none: no warm start motion
FRAME_SHARE = 0.1  # a video frame's pass, as a share of the iterations, unless frame_iterations says


@dataclass(frozen=True)
class VideoSettings(_Stage):
    """How a clip is sketched after its key frame (`clipasso.video`): not part of `SketchSettings`, whose
    fields sketch the key frame and give every frame its loss."""

    frame_iterations: Optional[int] = option(
        None,
        "video: optimisation steps of each frame after the key frame, which starts from the previous frame's "
        "strokes moved by the optical flow (default a tenth of the iterations)",
        low=0,
        high=100000,
        unit="steps",
        above="a frame only refines the previous frame's strokes",
        metavar="N",
        kind="int",
    )
    temporal_weight: float = option(
        0.03,
        "video: weight of the temporal term, the mean squared distance (pixels of a 224 canvas) of the control "
        "points from where the optical flow moved the previous frame's (0: off; higher: steadier strokes that "
        "follow the picture's changes less)",
        low=0,
        high=1e6,
        metavar="W",
        step=0.001,
    )
    flow: str = option(
        "tvl1",
        "video: optical flow that moves the strokes from frame to frame (scikit-image: tvl1 = TV-L1, "
        "ilk = iterative Lucas-Kanade, faster; none = strokes start where they were)",
        choices=FLOW_METHODS,
    )
    frame_lr: Optional[float] = option(
        None,
        "video: learning rate of the frame passes (default the sketch's lr)",
        low=0,
        high=100,
        low_open=True,
        metavar="LR",
        kind="float",
    )

    def frame_steps(self, settings) -> int:
        """Steps of one frame pass for ``settings`` (a `SketchSettings`)."""
        if self.frame_iterations is not None:
            return int(self.frame_iterations)
        return max(1, int(round(FRAME_SHARE * int(settings.iterations))))

    def frame_learning_rate(self, settings) -> float:
        return float(self.frame_lr) if self.frame_lr is not None else FRAME_LR_SHARE * float(settings.lr)


FRAME_LR_SHARE = 1.0


STAGES = (
    ("prepare", PrepareSettings),
    ("models", ModelSettings),
    ("place", PlaceSettings),
    ("objective", ObjectiveSettings),
    ("optimizer", OptimizerSettings),
    ("select", SelectSettings),
)
FIELD_STAGE = {f.name: stage for stage, cls in STAGES for f in fields(cls)}
_STAGE_OF = {cls: stage for stage, cls in STAGES}

# A preset is the fields it changes; the defaults above are the original's ("paper").
PRESET_CHANGES: Dict[str, Dict[str, Any]] = {
    # The original defaults (run_object_sketching.py): RN101, 4 fresh augmentations per iteration,
    # 2000 iterations, 16 strokes, best of 3 seeds, eval every 10 iterations; a non-square picture is
    # stretched onto the square canvas (its fix_scale=0; clipasso.prepare.images.FRAMINGS).
    "paper": {},
    # CPU-friendly: same loss and encoder, but 2 augmented views per step drawn from a fixed pool of 16
    # whose target features are computed once (no target forward passes in the loop), 500 iterations,
    # best of 2 where both seeds run the first 20% of the steps and then only the leader (with the trace
    # loss the cut waits for the end of re-seeding), a stop once the best loss improves by less than 0.5%
    # over 200 steps, and framing "pad" (a white square, never stretched). Why these values, with the
    # commands that measured them: docs/benchmarks.md (bench/sketch.py, bench/speed.py --only-whole,
    # bench/studies/seed_trial.py, bench/studies/framing.py).
    "fast": dict(
        seeds=2, iterations=500, num_augs=2, aug_pool=16, framing="pad", seed_trial=0.2, seed_survivors=1, plateau=0.005
    ),
}
PRESET_NAMES = tuple(PRESET_CHANGES)
PRESET_HELP = (
    "paper: the original settings (RN101, 4 augmentations, 2000 iterations, best of 3); fast: CPU-friendly "
    "(500 iterations, 2 augmentations from a cached pool, best of 2)"
)


def _defaults() -> Dict[str, Any]:
    out = {}
    for _, cls in STAGES:
        inst = cls()
        out.update({f.name: getattr(inst, f.name) for f in fields(cls)})
    return out


# Every field's value under each preset (read-only use: PRESETS["fast"]["iterations"]).
# DEFAULTS: the field defaults by name, for the stage functions' own keyword defaults.
PRESETS: Dict[str, Dict[str, Any]] = {name: {**_defaults(), **changes} for name, changes in PRESET_CHANGES.items()}
DEFAULTS: Dict[str, Any] = _defaults()


def field_option(name: str) -> Option:
    """The `Option` of the field ``name`` of any stage."""
    if name not in FIELD_STAGE:
        raise KeyError(name)
    return option_of(dict(STAGES)[FIELD_STAGE[name]], name)


def all_fields():
    """(stage name, dataclasses.Field) of every option, in stage order."""
    for stage, cls in STAGES:
        for f in fields(cls):
            yield stage, f


def _nullable(name: str) -> bool:
    stage_cls = dict(STAGES)[FIELD_STAGE[name]]
    return next(f for f in fields(stage_cls) if f.name == name).default is None


def check_preset(preset) -> str:
    if preset not in PRESET_CHANGES:
        raise SettingsError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESET_CHANGES))}")
    return preset


@dataclass(frozen=True)
class SketchSettings:
    """All settings of one sketch: the preset they started from and one value per stage."""

    preset: str = "paper"
    prepare: PrepareSettings = field(default_factory=PrepareSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    place: PlaceSettings = field(default_factory=PlaceSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    select: SelectSettings = field(default_factory=SelectSettings)

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides) -> "SketchSettings":
        """The preset's settings with ``overrides`` (field names of any stage). An override of None
        leaves the field at the preset's value unless None is that field's own default (for example
        ``text=None`` is no text, ``strokes=None`` is the preset's stroke count)."""
        check_preset(preset)
        return cls(preset=preset).replace(**PRESET_CHANGES[preset]).replace(**overrides)

    def replace(self, **overrides) -> "SketchSettings":
        """A copy with fields changed by name (``preset=`` starts again from that preset)."""
        if "preset" in overrides:
            preset = overrides.pop("preset")
            if preset is not None and preset != self.preset:
                base = SketchSettings.from_preset(preset)
                keep = {
                    n: getattr(self, n) for n in FIELD_STAGE if getattr(self, n) != PRESETS[self.preset][n]
                }  # what was set on top of the old preset
                return base.replace(**keep).replace(**overrides)
        unknown = sorted(set(overrides) - set(FIELD_STAGE))
        if unknown:
            raise SettingsError(
                f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(sorted(FIELD_STAGE))}"
            )
        per_stage: Dict[str, Dict[str, Any]] = {}
        for name, value in overrides.items():
            if value is None and not _nullable(name):
                continue
            if isinstance(value, list) and name != "seeds":
                value = tuple(value)
            per_stage.setdefault(FIELD_STAGE[name], {})[name] = value
        changes = {stage: dataclasses.replace(getattr(self, stage), **vals) for stage, vals in per_stage.items()}
        return dataclasses.replace(self, **changes)

    def __getattr__(self, name):  # s.strokes == s.place.strokes
        stage = FIELD_STAGE.get(name)
        if stage is None:
            raise AttributeError(f"SketchSettings has no setting {name!r}")
        return getattr(object.__getattribute__(self, stage), name)

    def to_dict(self) -> Dict[str, Any]:
        """Every field by name (flat), with the preset."""
        out = {"preset": self.preset}
        for stage, _ in STAGES:
            out.update(dataclasses.asdict(getattr(self, stage)))
        return out

    # ------------------------------------------------------------------ derived values

    def seed_list(self) -> Tuple[int, ...]:
        seeds = self.seeds
        if isinstance(seeds, (list, tuple)):
            return tuple(int(s) for s in seeds)
        return tuple(int(self.seed) + SEED_SPACING * i for i in range(int(seeds)))

    @property
    def budget(self) -> Optional[int]:
        """The stroke budget of automatic abstraction (None without auto_strokes): max_strokes, or twice
        the stroke count."""
        if self.auto_strokes is None:
            return None
        return int(self.max_strokes) if self.max_strokes is not None else 2 * int(self.strokes)

    @property
    def optimized_strokes(self) -> int:
        """How many strokes the optimiser starts with: the stroke count, the pruning budget, or growing's
        start."""
        if self.auto_strokes is None:
            return int(self.strokes)
        return int(self.start_strokes) if self.abstraction_method == "grow" else int(self.budget)

    def optimize_config(self) -> "OptimizeConfig":
        return OptimizeConfig(**dataclasses.asdict(self.objective), **dataclasses.asdict(self.optimizer))

    # ------------------------------------------------------------------ the one validator

    def problems(self, label=lambda name: name):
        """Every problem with these settings, each a message naming the option as ``label(name)``."""
        for stage, _ in STAGES:
            yield from getattr(self, stage).problems(label)
        seeds = self.seeds
        if isinstance(seeds, (list, tuple)):
            if not seeds:
                yield f"{label('seeds')} is an empty list; give at least one seed"
            elif any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
                yield f"{label('seeds')} must be whole numbers >= 0; got {list(seeds)!r}"
            elif len(seeds) > MAX_SEEDS:
                yield f"{label('seeds')} lists {len(seeds)} seeds; at most {MAX_SEEDS} run together"
        total = self.optimized_strokes if self.problem_free("strokes", "max_strokes", "start_strokes") else None
        n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else seeds
        if total is not None and isinstance(n_seeds, int) and total * n_seeds > STROKES_X_SEEDS:
            yield (
                f"strokes x seeds must be at most {STROKES_X_SEEDS} ({total} strokes x {n_seeds} seeds; memory and "
                f"time per step grow with strokes x seeds; lower {label('strokes')} or {label('seeds')})"
            )
        bg = self.background_strokes
        if self.scene is True and self.problem_free("background_strokes") and isinstance(n_seeds, int):
            if bg * n_seeds > STROKES_X_SEEDS:
                yield (
                    f"background strokes x seeds must be at most {STROKES_X_SEEDS} ({bg} x {n_seeds}); lower "
                    f"{label('background_strokes')} or {label('seeds')}"
                )
            if self.auto_strokes is not None and bg < 2:
                yield (
                    f"{label('background_strokes')} must be at least 2 with {label('auto_strokes')} (the background "
                    f"is optimised with that many strokes and pruned from there); got {bg}"
                )
        if (
            self.auto_strokes is not None
            and self.abstraction_method == "grow"
            and self.budget is not None
            and isinstance(self.start_strokes, int)
            and self.start_strokes >= self.budget
        ):
            top = (
                f"{label('max_strokes')} ({self.budget})"
                if self.max_strokes is not None
                else f"{label('max_strokes')} ({self.budget}, twice {label('strokes')})"
            )
            yield f"{label('start_strokes')} ({self.start_strokes}) must be below {top}, where growing stops"

    def problem_free(self, *names) -> bool:
        return all(field_option(n).problem(n, getattr(self, n)) is None for n in names)

    def validate(self, label=lambda name: name) -> "SketchSettings":
        """Raise `SettingsError` with the first problem; returns self when there is none."""
        check_preset(self.preset)
        for msg in self.problems(label):
            raise SettingsError(msg)
        return self


STROKES_X_SEEDS = 16384  # strokes in all candidates together


@dataclass(frozen=True)
class OptimizeConfig(ObjectiveSettings, OptimizerSettings):
    """What `clipasso.optimize.optimize` needs: the objective's and the optimiser's fields together (the
    fields are theirs; nothing is defined here)."""

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides) -> "OptimizeConfig":
        check_preset(preset)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise SettingsError(f"unknown optimiser setting(s): {unknown}")
        values = {k: v for k, v in PRESET_CHANGES[preset].items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def rules(self, label):
        yield from ObjectiveSettings.rules(self, label)
        yield from OptimizerSettings.rules(self, label)

    @property
    def objective(self) -> ObjectiveSettings:
        return ObjectiveSettings(**{f.name: getattr(self, f.name) for f in fields(ObjectiveSettings)})

    @property
    def optimizer(self) -> OptimizerSettings:
        return OptimizerSettings(**{f.name: getattr(self, f.name) for f in fields(OptimizerSettings)})

    @property
    def reseed_every(self) -> int:
        """Steps between re-seeding checks (0 = never); see ``reseed_interval``."""
        if self.reseed_interval is not None:
            return int(self.reseed_interval)
        return AUTO_RESEED_INTERVAL if self.loss != "clip" else 0


AUTO_RESEED_INTERVAL = 50


__all__ = [
    "SketchSettings",
    "PrepareSettings",
    "ModelSettings",
    "PlaceSettings",
    "ObjectiveSettings",
    "OptimizerSettings",
    "SelectSettings",
    "VideoSettings",
    "FLOW_METHODS",
    "OptimizeConfig",
    "SettingsError",
    "Option",
    "option",
    "PRESETS",
    "PRESET_CHANGES",
    "PRESET_NAMES",
    "STAGES",
    "FIELD_STAGE",
    "field_option",
    "all_fields",
]
