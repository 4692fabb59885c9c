"""What ComfyUI users install: the licence, one dependency list without torch, the archive `comfy node
pack` builds (git-tracked files minus .comfyignore, computed by git itself), the registry icon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TORCH = {"torch", "torchvision", "torchaudio"}


def _requirements():
    names = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep, 1)[0]
    return requirement.lower().replace("_", "-")


def test_the_mit_licence_ships_and_pyproject_names_it():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    for f in project["license-files"]:
        assert (REPO / f).is_file(), f


def test_one_dependency_list_and_it_never_names_torch():
    """requirements.txt (what ComfyUI-Manager installs) and [project].dependencies (what pip, comfy-cli and
    the Registry read; listed statically, since the Registry does not resolve `dynamic`) are one list."""
    project = PYPROJECT["project"]
    assert "dependencies" not in project.get("dynamic", []), "the Registry reads no dynamic dependencies"
    assert project["dependencies"] == _requirements(), (
        "pyproject.toml [project].dependencies and requirements.txt differ: keep them identical, line by line"
    )
    names = {_name(r) for r in _requirements()}
    assert not names & TORCH, names
    assert {"open-clip-torch", "timm", "rembg", "onnxruntime", "numpy", "pillow"} <= names
    # the installed package reads the same list
    from importlib.metadata import requires

    installed = {_name(r) for r in requires("comfyui-clipasso") or [] if "extra ==" not in r}
    assert installed == names


def test_installing_the_requirements_keeps_the_installed_torch(tmp_path):
    """pip, asked to install requirements.txt into an environment that has torch (this one), would install
    nothing of torch, torchvision or torchaudio (a dry run with pip's install report)."""
    import torch

    report = tmp_path / "report.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            str(report),
            "-r",
            str(REPO / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0 and not os.environ.get("CI") and "network" in (out.stderr + out.stdout).lower():
        pytest.skip("no package index reachable: " + out.stderr[-300:])
    assert out.returncode == 0, out.stderr[-3000:]
    planned = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text()).get("install", [])
    }
    assert not set(planned) & TORCH, f"pip would change torch ({torch.__version__}): {planned}"


def _archive():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    ignored = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-from=.comfyignore"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(tracked.split("\n")) - set(ignored.split("\n")) - {""}


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_the_comfyui_archive_ships_the_pack_and_not_the_tests():
    files = _archive()
    for needed in (
        "__init__.py",
        "pyproject.toml",
        "requirements.txt",
        "LICENSE",
        "README.md",
        "clipasso/__init__.py",
        "clipasso/settings.py",
        "clipasso/data/u2netp.onnx",
        "nodes/__init__.py",
        "nodes/inputs.py",
        "clipasso/data/LICENSE-u2netp.txt",
    ):
        assert needed in files, needed
    assert any(f.startswith("web/docs/") for f in files)
    assert any(f.startswith("example_workflows/") and f.endswith(".json") for f in files)
    for left_out in ("tests/", "bench/", "docs/", ".ci/"):
        assert not [f for f in files if f.startswith(left_out)], left_out
    assert not [f for f in files if f.endswith((".pyc", ".pyo")) or "__pycache__" in f]
    assert not [f for f in files if (REPO / f).is_symlink()]


def test_the_registry_icon_is_a_file_of_this_repository_within_the_size_limit():
    from PIL import Image

    icon = PYPROJECT["tool"]["comfy"]["Icon"]
    repo_url = PYPROJECT["project"]["urls"]["Repository"]
    owner_repo = repo_url.removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert icon.startswith(prefix), icon
    path = REPO / icon.removeprefix(prefix)
    with Image.open(path) as im:
        assert im.format in ("PNG", "JPEG", "GIF") and im.width <= 800 and im.height <= 400
