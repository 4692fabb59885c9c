"""Setting up what a test needs from outside the repository (a real ComfyUI, a diffvg build): run a set-up
command with its output kept for the message, and turn a set-up that cannot be done into a skip here and
a failure on CI (``CI=true``), so a green CI never means "the test did not run"."""

from __future__ import annotations

import os
import subprocess
from typing import Callable, Type, TypeVar

T = TypeVar("T")


def run_checked(cmd, what: str, error: Type[Exception], *, cwd=None, env=None, tail_lines: int = 20):
    """Run ``cmd``; on a non-zero exit raise ``error`` naming ``what``, the command and its last lines."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-tail_lines:])
        raise error(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return proc


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def ensure_or_skip(ensure: Callable[[], T], error: Type[Exception], what: str, hint: str) -> T:
    """``ensure()`` for pytest: its ``error`` fails the test on CI and skips it elsewhere, with ``what``
    is needed and ``hint`` (where it comes from, how to point at one you have) in the message."""
    import pytest

    try:
        return ensure()
    except error as exc:
        msg = f"{what} is needed for this test and could not be set up: {exc}\n({hint})"
        if on_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
