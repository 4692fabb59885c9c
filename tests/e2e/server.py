"""Start a real ComfyUI server with this pack installed, tiny models in its models folder and its own
throw-away base directory (custom_nodes, models, input, output, temp, user)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import requests

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = "comfyui-clipasso"
# what is not part of the installed pack
_NOT_SHIPPED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    "tests",
    "bench",
    "out",
    "*.egg-info",
    "build",
    "dist",
    ".ci",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_u2netp() -> Optional[Path]:
    """rembg's u2netp.onnx for the matting node: $U2NET_HOME, ~/.u2net, the project's shared weights, or
    the copy shipped in clipasso/data."""
    cands = []
    for env in ("U2NET_HOME", "REMBG_HOME"):
        if os.environ.get(env):
            cands.append(Path(os.environ[env]) / "u2netp.onnx")
    cands += [
        Path.home() / ".u2net" / "u2netp.onnx",
        REPO.parent / "shared" / "weights" / "u2netp.onnx",
        REPO / "clipasso" / "data" / "u2netp.onnx",
    ]
    return next((p for p in cands if p.is_file()), None)


def install_pack(custom_nodes: Path) -> Path:
    """Copy this repository's pack files (no tests, no venv, no git) where ComfyUI looks for packs."""
    target = custom_nodes / PACK_NAME
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO, target, ignore=_NOT_SHIPPED, symlinks=False)
    return target


def prepare_base(base: Path) -> dict:
    """Lay out a ComfyUI base directory: our pack, tiny CLIP models, u2netp, user settings."""
    sys.path.insert(0, str(REPO))
    try:
        from clipasso.testing.tiny_models import write_tiny_models
    finally:
        sys.path.remove(str(REPO))
    for sub in ("custom_nodes", "input", "output", "temp", "models/clipasso", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    install_pack(base / "custom_nodes")
    models = write_tiny_models(base / "models" / "clipasso", as_defaults=True)
    # the picture the example workflows load (LoadImage widget value)
    shutil.copy(REPO / "clipasso" / "data" / "example.jpg", base / "input" / "clipasso_example.jpg")
    u2 = find_u2netp()
    if u2 is not None:
        shutil.copy(u2, base / "models" / "clipasso" / "u2netp.onnx")
    # The frontend shows a Templates dialog on a first visit; mark the tutorial as done.
    (base / "user" / "default" / "comfy.settings.json").write_text(
        '{"Comfy.TutorialCompleted": true, "Comfy.Workflow.ShowMissingNodesWarning": true, '
        '"Comfy.Minimap.Visible": false}'
    )
    return {"models": models, "u2netp": u2}


class ComfyServer:
    def __init__(self, tree: Path, base: Path, port: Optional[int] = None, startup_timeout: float = 240.0):
        self.tree, self.base = Path(tree), Path(base)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.base / "comfyui.log"
        self.startup_seconds = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ComfyServer":
        env = dict(os.environ)
        # nothing in these tests may reach the network: weights come from the models folder
        env.update(
            {"HF_HUB_OFFLINE": "1", "CLIPASSO_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COMFYUI_CLIPASSO_TEST": "1"}
        )
        cmd = [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            self.host,
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base),
            "--database-url",
            "sqlite:///:memory:",
            "--disable-auto-launch",
            "--preview-size",
            "256",
            "--disable-api-nodes",
        ]
        log = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.tree, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        while time.monotonic() - t0 < self.startup_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ComfyUI exited with code {self.proc.returncode} during start-up:\n" + self.log_tail()
                )
            try:
                if requests.get(self.url + "/object_info", timeout=5).ok:
                    self.startup_seconds = time.monotonic() - t0
                    return self
            except requests.RequestException:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.startup_timeout:.0f} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
