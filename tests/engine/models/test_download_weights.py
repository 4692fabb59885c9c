"""`clipasso download-weights`: a real HTTP download (from a server on 127.0.0.1), checked, atomic,
and loadable afterwards; a clear error when downloads are off."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from clipasso import models
from clipasso.cli import main
from clipasso.testing.openai_format import (
    TINY_RN,
    LocalDownloads,
    build_openai_model,
    registry_entry_at,
    save_openai_archive,
)


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    with LocalDownloads(tmp_path / "www") as downloads:
        yield downloads


def test_fetch_url_checks_the_hash_and_never_leaves_a_partial_file(server, tmp_path):
    root, base = server.root, server.base
    payload = b"x" * 300_000
    (root / "f.bin").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    out = io.StringIO()
    dest = models.fetch_url(f"{base}/f.bin", tmp_path / "dl" / "f.bin", sha256=sha, stream=out)
    assert dest.read_bytes() == payload
    assert "MB" in out.getvalue() and "#" in out.getvalue()  # the progress line
    with pytest.raises(ValueError, match="wrong SHA-256"):
        models.fetch_url(f"{base}/f.bin", tmp_path / "dl" / "g.bin", sha256="0" * 64, stream=io.StringIO())
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["f.bin"]
    with pytest.raises(OSError):
        models.fetch_url(f"{base}/missing.bin", tmp_path / "dl" / "h.bin", stream=io.StringIO())
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["f.bin"]


def test_download_weights_fetches_an_openai_file_and_checks_it_loads(server, tmp_path, monkeypatch):
    archive = save_openai_archive(build_openai_model(TINY_RN, 0), tmp_path / "RN101.pt")
    url = server.publish("RN101.pt", Path(archive).read_bytes())
    # open_clip's registry would name OpenAI's server; point that entry at the local one
    monkeypatch.setattr(models.search, "pretrained_cfg", registry_entry_at(models.search.pretrained_cfg, "RN101", url))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    folder = tmp_path / "models"
    enc = models.download_weights("RN101", "openai", folder, stream=io.StringIO())
    assert Path(enc.source) == folder / "RN101.pt" and not enc.is_vit
    models.forget(folder / "RN101.pt")
    again = models.load_clip("RN101", "openai", models_dir=folder, allow_download=False)
    assert Path(again.source) == folder / "RN101.pt"


def test_download_weights_command_when_downloads_are_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPASSO_OFFLINE", "1")
    rc = main(["download-weights", "--models-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert f"put RN101.pt into {tmp_path}" in err and f"put ViT-B-32.pt into {tmp_path}" in err
    assert "u2netp" in out  # ships with the package: nothing to download
    assert "Traceback" not in err
