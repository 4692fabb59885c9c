"""The one place that decides where the engine computes and in what precision.

Every front-end and stage asks here: `pick_device` (the device a name such as ``"auto"`` means),
`amp_dtype` (the autocast dtype of the CLIP encoder for a precision word on a device), `eval_amp_dtype`
(the eval loss's), `autocast` (the context the encoder runs in), `grad_scaler_needed` and
`precision_label` (a dtype back in words). Nothing else in the engine or the nodes calls
``torch.autocast`` or compares precision words (tests/project/test_layout.py checks).

One vocabulary, `PRECISIONS`: ``auto``, ``fp32``, ``fp16``, ``bf16`` — the settings field
``mixed_precision``, the CLI's ``--precision`` and the Load CLIPasso Models node's ``precision`` widget
take the same words. Older words stay accepted as aliases (`PRECISION_ALIASES`: release 0.2's settings
said ``off`` for fp32), mapped by `precision_word`, here only.

Imports no torch at module level: the settings (and the command line's parsing) read the words.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Optional

from .errors import PipelineError

if TYPE_CHECKING:  # pragma: no cover
    import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PRECISION_ALIASES = {"off": "fp32"}  # old word -> the word it means now (0.2 settings, saved scripts)
DEVICES = ("auto", "cpu", "cuda", "mps")
# The `compile` setting (clipasso.models.compiled): auto = where it pays back, on, off = eager.
COMPILE_MODES = ("auto", "on", "off")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that compute bf16 dot products natively
AUTOCAST_DEVICE_TYPES = ("cuda", "mps", "cpu")  # where torch.autocast is used at all


def precision_word(word):
    """The precision word ``word`` stands for: an alias (`PRECISION_ALIASES`) mapped to today's word,
    anything else returned as it is (the settings' validation names what is allowed)."""
    if isinstance(word, str):
        return PRECISION_ALIASES.get(word, word)
    return word


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """True when this CPU computes bf16 natively (x86 ``avx512_bf16`` or AMX, from /proc/cpuinfo).

    Only there does bf16 autocast pay (figures and command in docs/benchmarks.md); where bf16 is
    emulated it is slower. CPUs this cannot read (no /proc/cpuinfo: macOS, Windows) count as not native:
    they keep fp32 unless bf16 is asked for.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(flag in flags for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False


def amp_dtype(
    precision: str,
    device: "torch.device",
    accelerator: Optional[Callable[["torch.device"], Optional["torch.dtype"]]] = None,
) -> Optional["torch.dtype"]:
    """Autocast dtype of the encoder (None = fp32) for a precision word (`PRECISIONS` or an alias) on
    ``device``.

    - fp32: None everywhere.
    - CUDA: fp16 for auto and fp16, bf16 when asked. fp16 rather than bf16 by measurement
      (bench/studies/precision.py): the RN101 loss gradient under fp16 autocast stays much closer to
      fp32's. The original CLIPasso ran in fp16 too; fp16 runs with a GradScaler (`grad_scaler_needed`).
    - CPU: bf16 for auto where it is native (`cpu_bf16_native`; bench/precision_reach.py: nearly the same
      loss reached for under half the step time), bf16 when asked (also where it is emulated); fp16 on a
      CPU is never used (its kernels are emulated there and much slower): it runs fp32.
    - Other accelerators (mps, xpu, ...): without ``accelerator`` (the engine alone) as a CPU without
      native bf16. With it (a function device -> dtype or None: ComfyUI's judgement, passed by the
      node), fp16 and bf16 are taken as asked and auto is what that function says.
    The figures, with the commands and the machine, are in docs/benchmarks.md.
    """
    import torch

    word = precision_word(precision)
    if word not in PRECISIONS:
        raise PipelineError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if word == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if word == "bf16" else torch.float16
    if device.type == "cpu" or accelerator is None:
        if word == "bf16":
            return torch.bfloat16
        if word == "auto" and device.type == "cpu" and cpu_bf16_native():
            return torch.bfloat16
        return None
    if word == "fp16":
        return torch.float16
    if word == "bf16":
        return torch.bfloat16
    return accelerator(device)


def eval_amp_dtype(train_dtype: Optional["torch.dtype"]) -> Optional["torch.dtype"]:
    """Autocast dtype of the eval loss: the training one, except fp32 under bf16, whose loss bias
    (docs/benchmarks.md, GPU precision) would otherwise show in the reported loss and could reorder close
    seeds. The eval sees one view per candidate every eval_interval steps: a small share of the work."""
    import torch

    return None if train_dtype == torch.bfloat16 else train_dtype


def precision_label(dtype: Optional["torch.dtype"]) -> str:
    """An autocast dtype from `amp_dtype` as its precision word: 'fp32' (None), 'bf16' or 'fp16'."""
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def autocast(device, dtype: Optional["torch.dtype"]):
    """The context the encoder runs in: autocast to ``dtype`` on ``device`` (a device or its type
    name); a no-op context for None and on devices without autocast."""
    import torch

    kind = getattr(device, "type", device)
    enabled = dtype is not None and kind in AUTOCAST_DEVICE_TYPES
    return torch.autocast(kind, dtype=dtype, enabled=enabled)


def grad_scaler_needed(dtype: Optional["torch.dtype"], device) -> bool:
    """Whether the optimiser's step goes through a GradScaler: fp16 autocast on CUDA, where small
    gradients would otherwise underflow."""
    import torch

    return dtype == torch.float16 and getattr(device, "type", device) == "cuda"


def pick_device(device: str = "auto") -> "torch.device":
    """'auto' -> cuda, then mps, then cpu; an explicit device that is missing is a clear error."""
    import torch

    def mps_available():
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()

    name = str(device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError("device 'cuda' was asked for but this torch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not mps_available():
        raise PipelineError("device 'mps' was asked for but Apple's Metal backend is not available; use cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise PipelineError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from exc


__all__ = [
    "PRECISIONS",
    "PRECISION_ALIASES",
    "DEVICES",
    "precision_word",
    "cpu_bf16_native",
    "amp_dtype",
    "eval_amp_dtype",
    "precision_label",
    "autocast",
    "grad_scaler_needed",
    "pick_device",
]
