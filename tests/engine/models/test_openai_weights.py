"""Weights in the formats users really have, loaded through the real loader.

OpenAI's released ``RN101.pt`` / ``ViT-B-32.pt`` are fp16 TorchScript archives (see
clipasso/testing/openai_format.py, which writes such files from a small model in OpenAI's own layout); open_clip
and Hugging Face hand out state dicts (``.safetensors``, ``.bin``, ``.pt``, sometimes wrapped in
``{"state_dict": ...}`` or with ``module.`` prefixes). Every one must load, end up in fp32 and
compute the same embeddings as the model it was written from.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from clipasso import models
from clipasso.cli import main
from clipasso.models import WeightsNotFoundError, load_clip, read_checkpoint
from clipasso.testing.openai_format import (
    TINY_RN,
    TINY_VIT,
    build_openai_model,
    save_openai_archive,
    state_dict_fp16_rounded,
)


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    """Each test loads from files (no encoder cached by an earlier test); the session's encoders are
    put back afterwards, so later tests still get the very objects their fixtures hold."""
    monkeypatch.delenv(models.MODELS_DIR_ENV, raising=False)
    saved = models.cached_encoders()
    models.clear_cache()
    yield
    models.clear_cache()
    models.restore_cache(saved)


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory):
    """Tiny RN101.pt / ViT-B-32.pt in OpenAI's fp16 TorchScript format, plus the fp32 source models."""
    folder = tmp_path_factory.mktemp("openai")
    rn, vit = build_openai_model(TINY_RN, 0), build_openai_model(TINY_VIT, 1)
    return {
        "folder": folder,
        "rn_model": rn,
        "vit_model": vit,
        "rn": save_openai_archive(rn, folder / "RN101.pt"),
        "vit": save_openai_archive(vit, folder / "ViT-B-32.pt"),
    }


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 224, 224, generator=g)


def _source_embedding(model, images, encoder, rounded=True):
    m = copy.deepcopy(model)
    if rounded:  # the weights as the fp16 file holds them, computed in fp32
        m.load_state_dict(state_dict_fp16_rounded(model))
    with torch.no_grad():
        return m.encode_image(encoder.normalize(images))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_the_file_is_what_openai_released(openai_files):
    # the format facts the loader must cope with, checked on the file itself
    with pytest.raises(RuntimeError, match="TorchScript"):
        torch.load(openai_files["rn"], weights_only=True)
    assert models.is_torchscript_archive(openai_files["rn"])
    state = torch.jit.load(openai_files["rn"], map_location="cpu").state_dict()
    assert {"input_resolution", "context_length", "vocab_size"} <= set(state)
    assert state["visual.layer1.0.conv1.weight"].dtype == torch.float16
    assert state["visual.bn1.weight"].dtype == torch.float32  # norms stay fp32, as in OpenAI's files
    vstate = torch.jit.load(openai_files["vit"], map_location="cpu").state_dict()
    assert vstate["visual.transformer.resblocks.0.attn.in_proj_weight"].dtype == torch.float16


@pytest.mark.parametrize("which", ["rn", "vit"])
def test_fp16_archive_loads_in_fp32_and_embeds_like_its_source(openai_files, which):
    name = "RN101" if which == "rn" else "ViT-B-32"
    enc = load_clip(name, "openai", weights=openai_files[which], allow_download=False)
    assert enc.is_vit == (which == "vit") and enc.image_size == 224
    assert enc.extra["format"].startswith("TorchScript")
    assert all(p.dtype == torch.float32 for p in enc.model.parameters())
    assert all(not p.requires_grad for p in enc.model.parameters()) and not enc.model.training
    x = _images()
    got = enc.embed(x)
    exact = _source_embedding(openai_files[which + "_model"], x, enc, rounded=True)
    assert _rel(got, exact) < 1e-5  # every weight went to the right place
    fp32 = _source_embedding(openai_files[which + "_model"], x, enc, rounded=False)
    assert _rel(got, fp32) < 5e-3  # within fp16 rounding of the weights
    if which == "vit":  # OpenAI's ViTs use QuickGELU; the plain GELU would give other numbers
        blk = enc.visual.transformer.resblocks[0].mlp
        assert "QuickGELU" in type(blk.gelu).__name__


def test_fp32_archive_loads_exactly(openai_files, tmp_path):
    path = save_openai_archive(openai_files["rn_model"], tmp_path / "RN101.pt", fp16=False)
    enc = load_clip("RN101", weights=path, allow_download=False)
    x = _images(2, seed=3)
    assert _rel(enc.embed(x), _source_embedding(openai_files["rn_model"], x, enc, rounded=False)) < 1e-5


def test_archive_found_in_a_models_folder_offline(openai_files, tmp_path):
    folder = tmp_path / "models" / "clipasso"
    folder.mkdir(parents=True)
    shutil.copy(openai_files["rn"], folder / "RN101.pt")
    enc = load_clip("RN101", "openai", models_dir=[str(tmp_path / "empty"), str(folder)], allow_download=False)
    assert Path(enc.source) == folder / "RN101.pt" and not enc.is_vit


def test_archive_found_in_openai_clip_cache_under_home(openai_files, tmp_path, monkeypatch):
    # where OpenAI's `clip` package keeps its downloads
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    shutil.copy(openai_files["vit"], tmp_path / ".cache" / "clip" / "ViT-B-32.pt")
    enc = load_clip("ViT-B-32", "openai", models_dir=None, allow_download=False)
    assert enc.is_vit and Path(enc.source) == tmp_path / ".cache" / "clip" / "ViT-B-32.pt"


def test_unusable_candidate_is_skipped_and_reported(openai_files, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "models"
    folder.mkdir()
    data = Path(openai_files["rn"]).read_bytes()
    (folder / "RN101.pt").write_bytes(data[: len(data) // 3])  # an interrupted download
    cache = tmp_path / "home" / ".cache" / "clip"
    cache.mkdir(parents=True)
    shutil.copy(openai_files["rn"], cache / "RN101.pt")
    with caplog.at_level(logging.WARNING, logger="clipasso.models"):
        enc = load_clip("RN101", "openai", models_dir=folder, allow_download=False)
    assert Path(enc.source) == cache / "RN101.pt"
    assert any(str(folder / "RN101.pt") in r.getMessage() for r in caplog.records)
    # with no good file left the error says what to do first, then what was wrong with each file
    (cache / "RN101.pt").unlink()
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip("RN101", "openai", models_dir=folder, allow_download=False)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"Put RN101.pt (CLIP RN101, openai weights) into {folder}")
    bad = [ln for ln in lines if str(folder / "RN101.pt") in ln and "truncated" in ln]
    assert bad, str(info.value)
    # the failure is remembered only until the file changes: a fresh copy is used at once
    shutil.copy(openai_files["rn"], folder / "RN101.pt")
    enc = load_clip("RN101", "openai", models_dir=folder, allow_download=False)
    assert Path(enc.source) == folder / "RN101.pt"


def test_wrong_kind_of_model_is_refused(openai_files):
    with pytest.raises(WeightsNotFoundError, match="is a CLIP ViT"):
        load_clip("ViT-B-32", weights=openai_files["rn"], allow_download=False)


@pytest.mark.parametrize(
    "layout", ["safetensors", "bin", "pt-wrapped", "pt-module-prefix", "hf-folder", "hf-folder-bin"]
)
def test_open_clip_state_dict_layouts(openai_files, tmp_path, layout):
    from safetensors.torch import save_file

    model = openai_files["rn_model"]
    state = {k: v.clone() for k, v in model.state_dict().items()}  # OpenAI's names = open_clip's names
    folder = tmp_path / "models"
    folder.mkdir()
    if layout == "safetensors":
        path = folder / "RN101-openai.safetensors"
        save_file(state, str(path))
    elif layout == "bin":
        path = folder / "RN101-openai.bin"
        torch.save(state, path)
    elif layout == "pt-wrapped":  # an open_clip training checkpoint
        path = folder / "RN101_openai.pt"
        torch.save({"epoch": 3, "name": "run", "state_dict": state}, path)
    elif layout == "pt-module-prefix":  # saved from DataParallel / DDP
        path = folder / "RN101.pt"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif layout == "hf-folder":  # a Hugging Face hub download, folder named after the repo
        (folder / "resnet101_clip.openai").mkdir()
        path = folder / "resnet101_clip.openai" / "open_clip_model.safetensors"
        save_file(state, str(path))
    else:
        (folder / "resnet101_clip.openai").mkdir()
        path = folder / "resnet101_clip.openai" / "open_clip_pytorch_model.bin"
        torch.save(state, path)
    enc = load_clip("RN101", "openai", models_dir=folder, allow_download=False)
    assert Path(enc.source) == path
    x = _images(2, seed=1)
    assert _rel(enc.embed(x), _source_embedding(model, x, enc, rounded=False)) < 1e-5


class _Boom:
    """A pickled object whose unpickling would run code (here: create a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_state_dicts_load_with_weights_only(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "RN101.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1), "payload": _Boom(str(marker))}, path)
    with pytest.raises(models.WeightsFileError, match="pickled Python objects"):
        read_checkpoint(path)
    assert not marker.exists()


def test_broken_files_say_why(tmp_path):
    empty = tmp_path / "a.pt"
    empty.write_bytes(b"")
    with pytest.raises(models.WeightsFileError, match="empty"):
        read_checkpoint(empty)
    junk = tmp_path / "b.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(models.WeightsFileError, match="not a readable weights file"):
        read_checkpoint(junk)


def test_no_random_initialisation_warning_while_loading(openai_files, caplog):
    with caplog.at_level(logging.WARNING):
        load_clip("RN101", weights=openai_files["rn"], allow_download=False)
    assert not any("initialized randomly" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- the command line


@pytest.fixture
def photo(tmp_path):
    img = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(img).ellipse([20, 20, 76, 76], outline="black", width=5)
    path = tmp_path / "photo.png"
    img.save(path)
    return path


def _run(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out, err


def test_cli_sketches_with_openai_files_given_by_flag(openai_files, photo, tmp_path, capsys):
    out_svg = tmp_path / "s.svg"
    out, _ = _run(
        [
            "sketch",
            str(photo),
            "-o",
            str(out_svg),
            "--clip-weights",
            openai_files["rn"],
            "--saliency-weights",
            openai_files["vit"],
            "--offline",
            "--no-background-removal",
            "--strokes",
            "4",
            "--seeds",
            "1",
            "--iterations",
            "2",
            "-q",
        ],
        capsys,
    )
    assert out_svg.is_file() and "RN101" in out


def test_cli_sketches_from_a_models_folder_offline(openai_files, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/clip to fall back on
    folder = tmp_path / "clipasso_models"
    folder.mkdir()
    shutil.copy(openai_files["rn"], folder / "RN101.pt")
    shutil.copy(openai_files["vit"], folder / "ViT-B-32.pt")
    out_svg = tmp_path / "s.svg"
    _run(
        [
            "sketch",
            str(photo),
            "-o",
            str(out_svg),
            "--models-dir",
            str(folder),
            "--offline",
            "--no-background-removal",
            "--strokes",
            "4",
            "--seeds",
            "1",
            "--iterations",
            "2",
            "-q",
        ],
        capsys,
    )
    assert out_svg.is_file()
