"""A small client for a running ComfyUI: HTTP for /prompt, /history, /view, /object_info,
/interrupt, /upload, and the WebSocket for execution events and preview frames."""

from __future__ import annotations

import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import requests


class PromptRejected(Exception):
    """/prompt answered 400: the graph did not validate. ``.body`` is the server's JSON answer."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(json.dumps(body, indent=1)[:4000])


@dataclass
class Run:
    """What the WebSocket told us about one prompt."""

    prompt_id: str
    status: str = "pending"  # success | error | interrupted | timeout
    events: List[tuple] = field(default_factory=list)
    progress: List[dict] = field(default_factory=list)
    previews: List[bytes] = field(default_factory=list)  # image bytes of binary preview frames
    error: Optional[dict] = None
    seconds: float = 0.0

    def of_type(self, kind: str) -> List[dict]:
        return [data for k, data in self.events if k == kind]


class ComfyClient:
    def __init__(self, host: str, port: int):
        self.base = f"http://{host}:{port}"
        self.ws_base = f"ws://{host}:{port}"
        self.client_id = uuid.uuid4().hex

    # ------------------------------------------------------------------ HTTP
    def get(self, path: str, **params) -> requests.Response:
        r = requests.get(self.base + path, params=params, timeout=60)
        r.raise_for_status()
        return r

    def object_info(self, node: Optional[str] = None) -> Dict[str, Any]:
        return self.get("/object_info" + (f"/{node}" if node else "")).json()

    def queue(self, prompt: dict, workflow: Optional[dict] = None) -> str:
        body = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        r = requests.post(self.base + "/prompt", json=body, timeout=60)
        if r.status_code == 400:
            raise PromptRejected(r.json())
        r.raise_for_status()
        return r.json()["prompt_id"]

    def history(self, prompt_id: str, wait: float = 30.0) -> dict:
        """The history entry of a prompt. ComfyUI files it just after the last WebSocket message, so
        this waits (up to ``wait`` seconds) for it to appear."""
        end = time.monotonic() + wait
        while True:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry and entry.get("status") or time.monotonic() > end:
                return entry or {}
            time.sleep(0.2)

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        return self.get("/view", filename=filename, subfolder=subfolder, type=type).content

    def interrupt(self) -> None:
        requests.post(self.base + "/interrupt", json={}, timeout=30).raise_for_status()

    def upload(self, name: str, data: bytes, kind: str = "image/png", subfolder: str = "") -> dict:
        files = {"image": (name, data, kind)}
        r = requests.post(
            self.base + "/upload/image", files=files, data={"overwrite": "true", "subfolder": subfolder}, timeout=60
        )
        r.raise_for_status()
        return r.json()

    # ------------------------------------------------------------------ WebSocket
    def connect(self):
        import websocket

        ws = websocket.WebSocket()
        ws.connect(f"{self.ws_base}/ws?clientId={self.client_id}", timeout=30)
        return ws

    def run(self, prompt: dict, timeout: float = 300.0, workflow: Optional[dict] = None, on_event=None) -> Run:
        """Queue ``prompt`` and follow it on the WebSocket until it ends (or ``timeout`` seconds pass).

        ``on_event(run, kind, data)`` is called for every JSON message of this prompt (the
        interruption test uses it to press Cancel once the optimizer reports progress)."""
        ws = self.connect()  # before queueing, so no message is missed
        try:
            start = time.monotonic()
            run = Run(self.queue(prompt, workflow))
            return self.follow(ws, run, start, timeout, on_event)
        finally:
            ws.close()

    def follow(self, ws, run: Run, start: float, timeout: float, on_event=None) -> Run:
        import websocket

        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                run.status = "timeout"
                break
            ws.settimeout(min(left, 5.0))
            try:
                msg = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(msg, bytes):
                event = struct.unpack(">I", msg[:4])[0]
                if event == 1:  # preview image: 4 bytes event, 4 bytes format, image
                    run.previews.append(msg[8:])
                elif event == 4:  # preview with metadata: 4 bytes json length, json, image
                    n = struct.unpack(">I", msg[4:8])[0]
                    run.previews.append(msg[8 + n :])
                continue
            data = json.loads(msg)
            kind, body = data.get("type"), data.get("data") or {}
            if body.get("prompt_id") not in (None, run.prompt_id):
                continue
            run.events.append((kind, body))
            if kind == "progress":
                run.progress.append(body)
            if on_event is not None:
                on_event(run, kind, body)
            if kind == "execution_error":
                run.status, run.error = "error", body
                break
            if kind == "execution_interrupted":
                run.status = "interrupted"
                break
            if kind == "execution_success" or (
                kind == "executing" and body.get("node") is None and body.get("prompt_id") == run.prompt_id
            ):
                run.status = "success"
                break
        run.seconds = time.monotonic() - start
        return run
