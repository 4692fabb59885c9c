"""The mixed-precision rule of the optimiser (issue 12 part 4): fp16 on CUDA for "auto", by measurement
(the CPU rule, bf16 where native, is issue 14's: tests/test_speedups.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from clipasso.objective import amp_dtype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "precision_cpu.json")

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_auto_is_fp16_on_cuda_and_on_the_cpu_bf16_only_where_native():
    from clipasso.objective import cpu_bf16_native

    assert amp_dtype("auto", CUDA) is torch.float16  # whether or not the GPU has bf16
    assert amp_dtype("auto", CPU) is (torch.bfloat16 if cpu_bf16_native() else None)  # tests/test_speedups.py
    assert amp_dtype("auto", torch.device("cuda", 1)) is torch.float16


def test_explicit_choices_are_kept():
    assert amp_dtype("bf16", CUDA) is torch.bfloat16
    assert amp_dtype("fp16", CUDA) is torch.float16
    assert amp_dtype("off", CUDA) is None
    assert amp_dtype("off", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16


def test_the_rule_is_what_the_measurement_chose():
    with open(RESULTS) as f:
        data = json.load(f)
    s = data["summary"]
    assert data["suggested_cuda_auto"] == "fp16"
    assert s["fp16"]["min_cosine"] >= data["settings"]["threshold"] > s["bf16"]["min_cosine"]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}[data["suggested_cuda_auto"]]
    assert amp_dtype("auto", CUDA) is dtype
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "studies", "precision.py"), "--table-only",
                           "--out", RESULTS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "suggested CUDA default for mixed_precision='auto': fp16" in proc.stdout


def test_fp16_autocast_gradient_follows_fp32_on_the_tiny_encoder(tiny_rn):
    """The path the benchmark measures, on the CPU: CLIPassoLoss under fp16 autocast vs fp32."""
    from clipasso.objective.losses import CLIPassoLoss

    g = torch.Generator().manual_seed(0)
    target = F.interpolate(torch.rand(1, 3, 7, 7, generator=g), size=(224, 224), mode="bilinear",
                           align_corners=False)[0]
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
