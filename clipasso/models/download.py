"""Downloading weights: on purpose (`fetch_weights`, ``clipasso download-weights``, the node's download
into ``models/clipasso``) or as the last step of the search (`open_clip_download`, open_clip's own
download into the Hugging Face cache). Nothing is downloaded at import; an offline machine is told so in
seconds (`reachable`), not after a minute of retries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

from ..errors import WeightsNotFoundError
from ..settings import DEFAULT_LOSS_MODEL, DEFAULT_PRETRAINED
from . import search

PathLike = Union[str, os.PathLike]


def download_host(cfg: dict) -> Optional[str]:
    """The host open_clip would download this pretrained config from."""
    from urllib.parse import urlparse

    try:
        import huggingface_hub  # noqa: F401 - open_clip prefers the hub when it is installed

        has_hub = True
    except ImportError:
        has_hub = False
    if cfg.get("hf_hub") and has_hub:
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if cfg.get("url"):
        return urlparse(cfg["url"]).hostname
    return None


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine fails in seconds instead of a minute of retries."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def offline() -> bool:
    """Whether downloads are switched off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or CLIPASSO_OFFLINE)."""
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CLIPASSO_OFFLINE")
    )


def open_clip_download(name: str, tag: Optional[str], cfg: dict, allow_download: bool) -> Tuple[Optional[Path], str]:
    """(downloaded file or None, why not) through open_clip's own download (Hugging Face cache)."""
    if not cfg:
        return None, (f"open_clip knows no pretrained tag {tag!r} for {name!r}, so nothing can be downloaded")
    if not allow_download:
        return None, "downloading was not allowed (--offline)"
    if offline():
        return None, "downloading is off (HF_HUB_OFFLINE / CLIPASSO_OFFLINE is set)"
    host = download_host(cfg)
    if host and not reachable(host):
        return None, f"{host} cannot be reached (offline?), so nothing was downloaded"
    from open_clip import pretrained as oc_pretrained

    try:
        got = oc_pretrained.download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - offline, blocked, ...
        return None, f"open_clip's download failed ({type(exc).__name__}: {str(exc)[:200]})"
    if got and os.path.isfile(got):
        return Path(got), ""
    return None, "open_clip's download returned no file"


def _progress_line(done: int, total: Optional[int], label: str, stream) -> None:
    mb = done / 1e6
    if total:
        frac = min(1.0, done / total)
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        text = f"\r{label} [{bar}] {mb:7.1f} / {total / 1e6:.1f} MB"
    else:
        text = f"\r{label} {mb:7.1f} MB"
    stream.write(text)
    stream.flush()


def fetch_url(
    url: str,
    dest: PathLike,
    sha256: Optional[str] = None,
    label: str = "",
    stream=None,
    timeout: float = 30.0,
    on_progress=None,
) -> Path:
    """Download ``url`` to ``dest`` with a progress line; atomic (a partial file never takes the
    name), checked against ``sha256`` when given. ``on_progress(done_bytes, total_bytes or None)`` is
    called after every chunk (a ComfyUI node shows it in its progress bar). Raises OSError/ValueError."""
    import hashlib
    import sys
    import urllib.request

    from ..atomic import atomic_open

    stream = stream if stream is not None else sys.stderr
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    # an exception inside (a cut download, a wrong hash) leaves no file and any previous one untouched
    with atomic_open(dest, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
        total = int(src.headers.get("Content-Length") or 0) or None
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            _progress_line(done, total, label or dest.name, stream)
            if on_progress is not None:
                on_progress(done, total)
        stream.write("\n")
        if total is not None and done != total:
            raise OSError(f"the download of {url} stopped after {done} of {total} bytes")
        if sha256 and not digest.hexdigest().startswith(sha256.lower()):
            raise ValueError(
                f"the file downloaded from {url} has the wrong SHA-256 ({digest.hexdigest()[:16]}..., "
                f"expected {sha256[:16]}...)"
            )
    return dest


def fetch_weights(
    name: str = DEFAULT_LOSS_MODEL,
    pretrained: Optional[str] = DEFAULT_PRETRAINED,
    folder: Optional[PathLike] = None,
    stream=None,
    on_progress=None,
) -> Path:
    """Download (name, pretrained) once, with a progress bar; returns the file.

    With ``folder`` the weights end up there as one file that the search finds
    (``<name>-<tag>.safetensors`` from the Hugging Face hub, else OpenAI's own ``RN101.pt``), fetched
    straight into it; without, in the caches the search looks in (Hugging Face's, ``~/.cache/clip``).
    ``on_progress(done_bytes, total_bytes or None)`` follows a download into ``folder``. Raises
    `WeightsNotFoundError` saying why and what to do instead.
    """
    import re
    import sys

    stream = stream if stream is not None else sys.stderr
    name, tag = search.clean_name(name), search.clean_tag(pretrained)
    cfg = search.pretrained_cfg(name, tag)
    manual = (
        f"put {search.official_file_name(name, tag)} into {folder or search.suggested_folder()} by hand "
        f"(see the README's Weights section)"
    )
    if not cfg:
        raise WeightsNotFoundError(
            f"open_clip knows no pretrained tag {pretrained!r} for {name!r}, so there is nothing to download: {manual}"
        )
    if offline():
        raise WeightsNotFoundError(
            f"Downloads are off (HF_HUB_OFFLINE / CLIPASSO_OFFLINE is set): unset it, or {manual}"
        )
    errors: List[str] = []
    got: Optional[Path] = None
    repo, repo_file = search.hf_repo(cfg)
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if repo and huggingface_hub is not None:
        host = download_host(cfg)
        if host and not reachable(host):
            errors.append(f"{host} cannot be reached")
        else:
            stream.write(f"{name} ({tag}): from huggingface.co/{repo}\n")
            try:
                remote = repo_file or search.HF_WEIGHT_NAMES[0]
                if folder is not None:  # straight into the folder (no second copy in the hub's cache)
                    dest = Path(folder) / f"{name}-{tag}{Path(remote).suffix}"
                    got = fetch_url(
                        huggingface_hub.hf_hub_url(repo, remote),
                        dest,
                        label=dest.name,
                        stream=stream,
                        on_progress=on_progress,
                    )
                else:
                    got = Path(huggingface_hub.hf_hub_download(repo, remote))
            except Exception as exc:  # noqa: BLE001 - network, auth, disk
                errors.append(f"Hugging Face hub: {type(exc).__name__}: {str(exc)[:200]}")
    url = cfg.get("url")
    if got is None and url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        host = parsed.hostname
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        if host and not reachable(host, port):
            errors.append(f"{host} cannot be reached")
        else:
            m = re.search(r"/([0-9a-f]{64})/", url)
            dest = Path(folder or Path.home() / ".cache" / "clip") / os.path.basename(url)
            stream.write(f"{name} ({tag}): from {host}\n")
            try:
                got = fetch_url(
                    url,
                    dest,
                    sha256=m.group(1) if m else None,
                    label=dest.name,
                    stream=stream,
                    on_progress=on_progress if folder is not None else None,
                )
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{host}: {type(exc).__name__}: {str(exc)[:200]}")
    if got is None:
        raise WeightsNotFoundError(
            f"Could not download CLIP {name} ({tag}): {'; '.join(errors) or 'no source'}. "
            f"Run again when online, or {manual}."
        )
    return got
