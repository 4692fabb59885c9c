"""Load CLIPasso Models: the CLIP loss encoder and the ViT saliency encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from comfy_api.latest import io

from .common import CATEGORY, ClipassoModelsType, NodeInputError, compute_device, models_dirs
from .inputs import setting_input, widget_default

# open_clip names offered in the lists; custom <name>.json configs in models/clipasso are added.
LOSS_MODELS = ["RN101", "RN50", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14"]
SALIENCY_MODELS = ["ViT-B-32", "ViT-B-16", "ViT-L-14"]
DEVICES = ["auto", "cpu"]


@dataclass(frozen=True, eq=False)
class ClipassoModels:
    """What Load CLIPasso Models hands to Saliency and Optimize: two frozen encoders, the device they
    live on and the autocast precision the optimiser should use (None = fp32)."""

    loss: object  # clipasso.models.ClipEncoder
    saliency: object  # clipasso.models.ClipEncoder
    device: torch.device
    autocast_dtype: Optional[torch.dtype]
    compile: str = "auto"  # the optimiser's compile setting (clipasso.models.compiled)

    def __repr__(self) -> str:
        from clipasso.device import precision_label

        dt = precision_label(self.autocast_dtype)
        return (
            f"ClipassoModels(loss={self.loss.name}, saliency={self.saliency.name}, "
            f"device={self.device}, precision={dt}, compile={self.compile})"
        )


def model_options(base):
    """The usual names, then every other model whose files (or <name>.json config) the models/clipasso
    folders hold (`clipasso.models.model_names_in`: file names only, nothing is loaded)."""
    from clipasso.models import model_names_in

    out = list(base)
    for n in model_names_in(models_dirs()):
        if n not in out:
            out.append(n)
    return out


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The optimiser's autocast dtype (None = fp32) for the node's precision word on ``device``: the engine's
    one rule (`clipasso.device.amp_dtype`), with ComfyUI's judgement deciding ``auto`` on accelerators other
    than CUDA and the CPU."""
    from clipasso.device import amp_dtype

    return amp_dtype(precision, device, accelerator=comfy_precision)


def comfy_precision(device: torch.device) -> Optional[torch.dtype]:
    """What ComfyUI would run a model in on ``device`` (fp16, bf16 or None = fp32)."""
    import comfy.model_management as mm

    if mm.should_use_fp16(device):
        return torch.float16
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return None


class LoadCLIPassoModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoLoadModels",
            display_name="Load CLIPasso Models",
            category=CATEGORY,
            description="Load the CLIP encoder whose features the sketch must match (the loss) and the CLIP ViT "
            "whose attention says where to start strokes (saliency). Weights are looked for in "
            "models/clipasso (e.g. RN101-openai.safetensors or the official RN101.pt) and in "
            "open_clip's caches, and downloaded on first use when allowed.",
            inputs=[
                setting_input(
                    "loss_model",
                    options=model_options(LOSS_MODELS),
                    tooltip="CLIP image encoder for the loss. CLIPasso uses RN101 (ResNet stages give "
                    "the geometry term, the embedding the semantic term).",
                ),
                setting_input(
                    "saliency_model",
                    options=model_options(SALIENCY_MODELS),
                    tooltip="CLIP ViT whose attention map places the initial strokes (CLIPasso: ViT-B/32).",
                ),
                setting_input(
                    "pretrained",
                    tooltip="open_clip pretrained tag of both models (weights file "
                    "<model>-<tag>.safetensors in models/clipasso).",
                ),
                setting_input(
                    "device",
                    options=DEVICES,
                    tooltip="auto = ComfyUI's device (GPU when there is one); cpu forces the CPU.",
                ),
                setting_input(
                    "precision",
                    field="mixed_precision",
                    tooltip="Autocast precision of the CLIP encoder in the optimiser. auto: fp16 on CUDA "
                    "(keeps the loss gradient closest to fp32; bf16 bends it more), bf16 on a CPU "
                    "with native bf16 (avx512_bf16 or AMX: much faster, nearly the same loss "
                    "reached; figures in the pack's docs/benchmarks.md), fp32 on other CPUs. fp16 on a CPU runs "
                    "fp32. The loss that keeps the best state and picks the winner is fp32 under bf16.",
                ),
                setting_input(
                    "allow_download",
                    tooltip="Download missing weights through open_clip on first use. Off: "
                    "only local files are used, and a missing file gives a "
                    "message naming where to put it.",
                ),
                setting_input(  # last: saved workflows keep their widget order
                    "compile",
                    optional=True,
                    tooltip="Compile the loss encoder's training step with torch.compile. auto: where it pays "
                    "back (a long run, or a step this machine compiled before: its cache is kept in "
                    "~/.cache/clipasso/compiled); on: always; off: never. The first compile takes about a "
                    "minute on a CPU (the node says so); it needs a C++ compiler on CPU (triton on CUDA), "
                    "and without one the run goes on uncompiled.",
                ),
            ],
            outputs=[
                ClipassoModelsType.Output(
                    "models",
                    display_name="models",
                    tooltip="The loaded encoders, for ViT Saliency and Optimize Sketch.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        loss_model=widget_default("loss_model"),
        saliency_model=widget_default("saliency_model"),
        pretrained=widget_default("pretrained"),
        device=widget_default("device"),
        precision="auto",
        allow_download=widget_default("allow_download"),
        compile="auto",
    ):
        from clipasso.device import COMPILE_MODES

        if compile not in COMPILE_MODES:  # before any weights are loaded
            raise NodeInputError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {compile!r}")
        dev = torch.device("cpu") if device == "cpu" else compute_device()
        dirs = models_dirs()
        tag = (pretrained or "").strip() or None
        if tag and any(c in tag for c in ("/", "\\", "..", ":")):  # it becomes part of weight file names
            raise NodeInputError(f"'pretrained' is an open_clip tag such as 'openai', not a path; got {tag!r}")
        with torch.inference_mode(False):  # encoders are used inside autograd by the optimiser
            loss = load_or_download(loss_model, tag, dirs, dev, bool(allow_download))
            sal = load_or_download(saliency_model, tag, dirs, dev, bool(allow_download))
        return io.NodeOutput(ClipassoModels(loss, sal, dev, autocast_dtype(precision, dev), compile))


def load_or_download(name: str, tag, dirs, device, allow_download: bool):
    """The encoder from the files on disk; missing, and downloads allowed, fetched once into the first
    models/clipasso folder with the node's progress bar following the bytes. Errors start with what to do."""
    import comfy.utils
    from clipasso.models import WeightsNotFoundError, download_weights, load_clip

    try:
        return load_clip(name, pretrained=tag, models_dir=dirs, device=device, allow_download=False)
    except WeightsNotFoundError as missing:
        if not allow_download or not dirs:
            raise
        action, _, details = str(missing).partition("\n")
    bar = comfy.utils.ProgressBar(100)

    def progress(done, total):
        if total:
            bar.update_absolute(min(100, int(100 * done / total)), 100)

    try:
        return download_weights(name, tag, folder=dirs[0], on_progress=progress, device=device)
    except WeightsNotFoundError as failed:
        raise WeightsNotFoundError(f"{action}\nThe download into {dirs[0]} did not work: {failed}\n{details}") from None


NODES = [LoadCLIPassoModels]
