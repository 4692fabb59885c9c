"""clipasso.models: loading encoders by name / file / models folder, freezing, caching, clear errors."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from clipasso import models
from clipasso.models import WeightsNotFoundError, load_clip


def test_loads_tiny_resnet_by_name_from_models_dir(tiny_rn, tiny_models):
    enc = tiny_rn
    assert enc.name == tiny_models["rn_name"] and not enc.is_vit
    assert enc.image_size == 224 and enc.patch_size is None
    assert len(enc.mean) == 3 and len(enc.std) == 3
    assert os.path.samefile(enc.source, tiny_models["rn"])
    assert not enc.model.training
    assert all(not p.requires_grad for p in enc.model.parameters())
    out = enc.embed(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_loads_tiny_vit(tiny_vit):
    assert tiny_vit.is_vit and tiny_vit.patch_size == 32 and tiny_vit.image_size == 224
    assert tiny_vit.embed(torch.rand(1, 3, 224, 224)).shape == (1, 32)


def test_weights_match_the_saved_file(tiny_rn, tiny_models):
    from safetensors.torch import load_file

    saved = load_file(tiny_models["rn"])
    state = tiny_rn.model.state_dict()
    assert torch.equal(state["visual.layer2.0.conv1.weight"], saved["visual.layer2.0.conv1.weight"])


def test_cached_per_name_source_device(tiny_rn, tiny_models):
    again = load_clip(tiny_models["rn_name"], models_dir=tiny_models["folder"], allow_download=False)
    assert again is tiny_rn
    other_dtype = load_clip(tiny_models["rn_name"], models_dir=tiny_models["folder"], dtype=torch.float64)
    assert other_dtype is not tiny_rn and other_dtype.dtype == torch.float64


def test_explicit_weights_file_with_config_beside_it(tiny_models, tmp_path):
    w = tmp_path / "my-sketch-encoder.safetensors"
    shutil.copy(tiny_models["rn"], w)
    shutil.copy(tiny_models["rn_config"], tmp_path / "my-sketch-encoder.json")
    enc = load_clip("my-sketch-encoder", weights=w, allow_download=False)
    assert enc.source == str(w) and not enc.is_vit


def test_default_names_found_in_models_dir(tiny_models):
    # a user drops files named after the default model + tag into models/clipasso
    enc = load_clip("RN101", "openai", models_dir=tiny_models["folder"], allow_download=False)
    assert os.path.basename(enc.source) == "RN101-openai.safetensors"
    vit = load_clip("ViT-B/32", "openai", models_dir=tiny_models["folder"], allow_download=False)
    assert vit.is_vit and vit.name == "ViT-B-32"


def test_official_openai_file_name_is_searched(tmp_path):
    paths = [str(p) for p in models.candidate_paths("RN101", "openai", models_dir=tmp_path)]
    assert str(tmp_path / "RN101.pt") in paths
    assert any("models--timm--resnet101_clip.openai" in p for p in paths)
    vit = [os.path.basename(str(p)) for p in models.candidate_paths("ViT-B-32", "openai", models_dir=tmp_path)]
    assert "ViT-B-32.pt" in vit


def test_missing_weights_error_names_model_paths_and_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip("RN101", "openai", models_dir=tmp_path, allow_download=False)
    msg = str(info.value)
    first = msg.splitlines()[0]
    # the first line is the action: which file into which folder
    assert first.startswith(f"Put RN101.pt (CLIP RN101, openai weights) into {tmp_path}"), first
    assert f"clipasso download-weights --models-dir {tmp_path}" in first
    assert "'RN101'" in msg and "openai" in msg
    assert str(tmp_path / "RN101-openai.safetensors").replace(str(tmp_path) + os.sep, "") in msg
    assert "--offline" in msg  # why nothing was downloaded


def test_offline_download_gives_the_same_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="offline"):
        load_clip("ViT-B-32", "openai", models_dir=tmp_path, allow_download=True)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_clip("RN101", weights=tmp_path / "nope.pt")


def test_wrong_file_for_model_is_a_clear_error(tiny_models, tmp_path):
    w = tmp_path / "RN50-openai.safetensors"
    shutil.copy(tiny_models["vit"], w)  # a ViT file named like an RN50 checkpoint
    with pytest.raises(WeightsNotFoundError, match="is a CLIP ResNet") as info:
        load_clip("RN50", "openai", models_dir=tmp_path, allow_download=False)
    assert str(w) in str(info.value) and "holds a CLIP ViT" in str(info.value)
    # given explicitly, the same file is an error whose first line says what to do
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip("RN50", "openai", weights=w, allow_download=False)
    assert str(info.value).startswith("Give the weights file that belongs to CLIP model 'RN50'")


def test_unknown_model_name(tmp_path):
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"0")
    with pytest.raises(models.ModelConfigError, match="unknown CLIP model"):
        load_clip("NotAModel-99", weights=w)


def test_models_dir_from_environment(tiny_models, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, tiny_models["folder"])
    enc = load_clip(tiny_models["vit_name"], allow_download=False)
    assert enc.is_vit and os.path.dirname(enc.source) == tiny_models["folder"]


def test_unreachable_hub_fails_fast_with_the_same_error(tmp_path, monkeypatch):
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1")  # nothing listens there: refused at once
    t = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="cannot be reached") as info:
        load_clip("ViT-B-32", "openai", models_dir=tmp_path, allow_download=True)
    assert time.perf_counter() - t < 30
    assert (
        str(info.value).splitlines()[0].startswith(f"Put ViT-B-32.pt (CLIP ViT-B-32, openai weights) into {tmp_path}")
    )


def test_model_names_in_reads_the_names_users_files_have(tmp_path):
    from clipasso.models import model_names_in

    for f in (
        "RN101.pt",
        "ViT-L-14-336px.pt",
        "RN50-openai.safetensors",
        "ViT-B-16-laion2b_s34b_b88k.safetensors",
        "my-model.json",
        "my-model.safetensors",
        "notes.txt",
        "u2netp.onnx",
        "ViT-B-32_openai.bin",
    ):
        (tmp_path / f).write_bytes(b"")
    assert model_names_in([tmp_path, tmp_path / "missing"]) == [
        "RN101",
        "RN50",
        "ViT-B-16",
        "ViT-B-32",
        "ViT-L-14-336",
        "my-model",
    ]
