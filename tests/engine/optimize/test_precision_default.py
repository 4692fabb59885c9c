"""The mixed-precision rule of the optimiser (issue 12 part 4): fp16 on CUDA for "auto", by measurement
(the CPU rule, bf16 where native, is issue 14's: tests/engine/optimize/test_speedups.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from clipasso.device import amp_dtype

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RESULTS = os.path.join(ROOT, "bench", "results", "precision_cpu.json")

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_auto_is_fp16_on_cuda_and_on_the_cpu_bf16_only_where_native():
    from clipasso.device import cpu_bf16_native

    assert amp_dtype("auto", CUDA) is torch.float16  # whether or not the GPU has bf16
    assert amp_dtype("auto", CPU) is (
        torch.bfloat16 if cpu_bf16_native() else None
    )  # tests/engine/optimize/test_speedups.py
    assert amp_dtype("auto", torch.device("cuda", 1)) is torch.float16


def test_explicit_choices_are_kept():
    assert amp_dtype("bf16", CUDA) is torch.bfloat16
    assert amp_dtype("fp16", CUDA) is torch.float16
    assert amp_dtype("fp32", CUDA) is None
    assert amp_dtype("fp32", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16
    assert amp_dtype("fp16", CPU) is None  # fp16 kernels on a CPU are emulated, many times slower: fp32


def test_one_vocabulary_with_the_old_word_off_read_as_fp32(tmp_path):
    """Settings, CLI and node say auto / fp32 / fp16 / bf16; release 0.2's settings word "off" (saved
    scripts, manifests, --precision off) still works, mapped to fp32 in clipasso.device only."""
    from clipasso.cli import build_parser
    from clipasso.cli.options import settings_from_args
    from clipasso.device import PRECISION_ALIASES, PRECISIONS, precision_label, precision_word
    from clipasso.settings import ObjectiveSettings, OptimizeConfig, SettingsError, SketchSettings, field_option

    assert PRECISIONS == ("auto", "fp32", "fp16", "bf16") and PRECISION_ALIASES == {"off": "fp32"}
    assert field_option("mixed_precision").choices == PRECISIONS
    assert {precision_label(dt) for dt in (None, torch.float16, torch.bfloat16)} == set(PRECISIONS) - {"auto"}
    assert precision_word("off") == "fp32" and precision_word("bf16") == "bf16"
    # every way a settings value comes in
    assert SketchSettings.from_preset("fast", mixed_precision="off").validate().mixed_precision == "fp32"
    assert SketchSettings().replace(mixed_precision="off").optimize_config().mixed_precision == "fp32"
    assert OptimizeConfig(mixed_precision="off").validate().mixed_precision == "fp32"
    assert ObjectiveSettings.of(None, mixed_precision="off").mixed_precision == "fp32"
    assert amp_dtype("off", CUDA) is None and amp_dtype("off", CPU) is None
    args = build_parser().parse_args(["sketch", "x.png", "-o", str(tmp_path / "x.svg"), "--precision", "off"])
    assert settings_from_args(args).mixed_precision == "fp32"
    args = build_parser().parse_args(["sketch", "x.png", "-o", str(tmp_path / "x.svg"), "--precision", "fp32"])
    assert settings_from_args(args).mixed_precision == "fp32"
    # an unknown word is still refused, naming today's words
    try:
        SketchSettings().replace(mixed_precision="half").validate()
    except SettingsError as exc:
        assert "auto, fp32, fp16, bf16" in str(exc) and "'half'" in str(exc)
    else:
        raise AssertionError("'half' was accepted")
    try:
        amp_dtype("half", CPU)
    except ValueError as exc:
        assert "auto, fp32, fp16, bf16" in str(exc)
    else:
        raise AssertionError("'half' was accepted")


def test_other_accelerators_follow_the_judgement_passed_in():
    """mps / xpu: the engine alone keeps fp32 unless bf16 is asked for; with a judgement (what ComfyUI
    passes), auto is what it says and fp16 / bf16 are taken as asked."""
    mps = torch.device("mps")
    assert amp_dtype("auto", mps) is None and amp_dtype("fp16", mps) is None
    assert amp_dtype("bf16", mps) is torch.bfloat16

    def says_fp16(device):
        return torch.float16

    assert amp_dtype("auto", mps, accelerator=says_fp16) is torch.float16
    assert amp_dtype("auto", mps, accelerator=lambda device: None) is None
    assert amp_dtype("bf16", mps, accelerator=says_fp16) is torch.bfloat16
    assert amp_dtype("fp32", mps, accelerator=says_fp16) is None
    assert amp_dtype("auto", CPU, accelerator=says_fp16) is amp_dtype("auto", CPU)  # the CPU keeps its rule
    assert amp_dtype("auto", CUDA, accelerator=lambda device: None) is torch.float16


def test_the_encoder_context_autocasts_only_when_a_dtype_is_given():
    from clipasso.device import autocast, grad_scaler_needed

    a, b = torch.ones(4, 4), torch.ones(4, 4)
    with autocast(CPU, None):
        assert (a @ b).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    assert grad_scaler_needed(torch.float16, CUDA) and not grad_scaler_needed(torch.float16, CPU)
    assert not grad_scaler_needed(torch.bfloat16, CUDA) and not grad_scaler_needed(None, CUDA)


def test_the_rule_is_what_the_measurement_chose():
    with open(RESULTS) as f:
        data = json.load(f)
    s = data["summary"]
    assert data["suggested_cuda_auto"] == "fp16"
    assert s["fp16"]["min_cosine"] >= data["settings"]["threshold"] > s["bf16"]["min_cosine"]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[data["suggested_cuda_auto"]]
    assert amp_dtype("auto", CUDA) is dtype
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "studies", "precision.py"), "--table-only", "--out", RESULTS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "suggested CUDA default for mixed_precision='auto': fp16" in proc.stdout


def test_fp16_autocast_gradient_follows_fp32_on_the_tiny_encoder(tiny_rn):
    """The path the benchmark measures, on the CPU: CLIPassoLoss under fp16 autocast vs fp32."""
    from clipasso.objective.losses import CLIPassoLoss

    g = torch.Generator().manual_seed(0)
    target = F.interpolate(torch.rand(1, 3, 7, 7, generator=g), size=(224, 224), mode="bilinear", align_corners=False)[
        0
    ]
    sketch = torch.ones(1, 3, 224, 224)
    sketch[..., 60:64, 30:190] = 0.0
    sketch[..., 60:200, 100:104] = 0.0
    grads = {}
    for name, dt in (("fp32", None), ("fp16", torch.float16)):
        x = sketch.clone().requires_grad_(True)
        loss = CLIPassoLoss(tiny_rn, target, num_augs=1, amp_dtype=dt)
        (loss.train_loss(x, [torch.Generator().manual_seed(1)])["total"].sum() * 1024).backward()
        grads[name] = x.grad.flatten().double() / 1024
    cos = float(F.cosine_similarity(grads["fp16"], grads["fp32"], dim=0))
    assert torch.isfinite(grads["fp16"]).all() and cos > 0.99, cos
