"""Background removal with rembg (U²-Net family): the object on white, and its mask.

CLIPasso computes a U²-Net salient-object mask on every run and, with ``mask_object=1`` (off by
default in the original, though its README recommends it), sketches the object composited on
white: cluttered backgrounds otherwise pull strokes away from the object. The original used the
full U²-Net (``u2net.pth``, 176 MB); our default is its small sibling U²-Net-p (``u2netp``, 4.6 MB),
which ships inside the package so matting works offline. We use rembg's ONNX sessions, so any
model rembg knows (u2netp, u2net, silueta, isnet-general-use, birefnet-general, ...) can be picked
by name; ``u2net`` is the original's network.

Where the weights file ``<model>.onnx`` is looked for, in order:
1. ``models_dir`` given by the caller (one folder or a list; ComfyUI passes its models folders),
   then the folders in ``$CLIPASSO_MODELS_DIR`` (``os.pathsep``-separated, as for the CLIP weights):
   ``<folder>/<model>.onnx`` or rembg's layout ``<folder>/models/<model>/<model>.onnx``;
2. rembg's own places: ``$U2NET_HOME`` (or ``$REMBG_HOME``, ``~/.rembg``, the old ``~/.u2net``);
3. the copy bundled with this package, ``clipasso/data/<model>.onnx`` (only ``u2netp.onnx`` is
   shipped: rembg's official export, Apache-2.0, see ``clipasso/data/README.md``).
If it is nowhere and ``allow_download`` is true, rembg downloads it (into the first folder of
step 1 when there is one); offline, or with downloads off, a `MattingWeightsNotFoundError` names
the file and the folders to put it in. We check before rembg is asked, because rembg would go to
the network; with a file on disk (the bundled one included) nothing touches the network.

The U²-Net family (u2netp, u2net, u2net_human_seg, silueta) with its file on disk runs through
onnxruntime directly (`U2NetSession`: rembg's own pre- and post-processing, the same masks, tested
against rembg). That skips importing rembg, whose dependencies compile code with numba on first
import: 40 s on a 2-core CPU with a cold cache (a fresh install, a new ComfyUI), 0.02 s here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import ClipassoError
from ..settings import PrepareSettings
from .images import alpha_of, as_rgb, to_pil

log = logging.getLogger(__name__)

DEFAULT_MATTING_MODEL = PrepareSettings.matting_model
MODELS_DIR_ENV = "CLIPASSO_MODELS_DIR"  # the same variable clipasso.models reads for CLIP weights
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")  # clipasso/data
# rembg sessions that take one image and return one mask, stored as "<name>.onnx"
from ..settings import MATTING_MODELS  # noqa: E402 - defined with the settings


class MattingError(ClipassoError, ValueError):
    """Bad arguments for background removal."""


class MattingWeightsNotFoundError(ClipassoError, FileNotFoundError):
    """The rembg model file is not on disk and could not be downloaded."""


class MattingWarning(UserWarning):
    """Background removal found no object; the whole image is used instead."""


@dataclass(frozen=True)
class Matting:
    """``image`` [3,H,W]: the object over white; ``mask`` [H,W]: 1 = object (binary unless soft).

    ``soft_mask`` is the model's own 0..1 output; ``found`` is False when nothing passed the
    threshold and the whole image was kept.
    """

    image: torch.Tensor
    mask: torch.Tensor
    soft_mask: torch.Tensor
    model: str
    found: bool = True


_sessions: Dict[Tuple[str, str], object] = {}
_lock = threading.Lock()


def available_models() -> Tuple[str, ...]:
    """The model names of `MATTING_MODELS` that the installed rembg provides."""
    try:
        from rembg.sessions import sessions_names
    except Exception:  # noqa: BLE001 - an old or broken rembg: offer the list, fail at load time
        return MATTING_MODELS
    return tuple(m for m in MATTING_MODELS if m in set(sessions_names))


def _session_class(model: str):
    try:
        from rembg.sessions import sessions_class
    except ImportError as exc:
        raise ImportError(
            "background removal needs rembg: pip install rembg onnxruntime (or turn background removal off)"
        ) from exc
    for cls in sessions_class:
        if cls.name() == model:
            return cls
    raise MattingError(f"unknown background-removal model {model!r}; choose one of: " + ", ".join(available_models()))


def _folders(models_dir) -> List[str]:
    """The caller's folders (None, one folder, or a list such as ComfyUI's paths), then those of
    ``$CLIPASSO_MODELS_DIR``, as absolute paths without repeats."""
    items = []
    if models_dir:
        items += [models_dir] if isinstance(models_dir, (str, os.PathLike)) else list(models_dir)
    items += os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep)
    out: List[str] = []
    for d in items:
        if d:
            path = os.path.abspath(os.path.expanduser(os.fspath(d)))
            if path not in out:
                out.append(path)
    return out


def bundled_weights(model: str) -> Optional[str]:
    """The copy of ``<model>.onnx`` shipped in ``clipasso/data`` (u2netp only), or None."""
    path = os.path.join(BUNDLED_DIR, f"{model}.onnx")
    return path if os.path.isfile(path) else None


def _rembg_paths(model: str, fname: str) -> List[str]:
    """Where rembg keeps ``fname``: ``<home>/models/<model>/`` and its old flat folder. Worked out from
    rembg's environment variables for the models we list, so that finding a file does not import rembg
    (see the module doc); another name asks rembg itself."""
    if model not in MATTING_MODELS:
        cls = _session_class(model)
        return [os.path.join(cls.model_dir(), fname), os.path.join(cls.legacy_home(), fname)]
    legacy = os.path.expanduser(os.getenv("U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net")))
    if os.getenv("U2NET_HOME"):
        home = legacy
    else:
        xdg = os.getenv("XDG_DATA_HOME")
        home = os.path.expanduser(
            os.getenv("REMBG_HOME", os.path.join(xdg, "rembg") if xdg else os.path.join("~", ".rembg"))
        )
    return [os.path.join(home, "models", model, fname), os.path.join(legacy, fname)]


def candidate_paths(model: str, models_dir=None) -> List[str]:
    """Every path where ``<model>.onnx`` is looked for, in order (``models_dir``: a folder or a list)."""
    fname = f"{model}.onnx"
    paths = []
    for d in _folders(models_dir):
        paths += [os.path.join(d, fname), os.path.join(d, "models", model, fname)]
    paths += _rembg_paths(model, fname)
    paths.append(os.path.join(BUNDLED_DIR, fname))  # last: the user's and rembg's copies win
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def find_weights(model: str, models_dir=None) -> Optional[str]:
    """The first existing weights file for ``model``, or None."""
    for path in candidate_paths(model, models_dir):
        if os.path.isfile(path):
            return path
    return None


@contextlib.contextmanager
def _rembg_home(folder: Optional[str]):
    """Point rembg at ``folder`` (U2NET_HOME wins over its other settings) for one session creation."""
    if folder is None:
        yield
        return
    old = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = folder
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = old


def _missing_error(model: str, models_dir, cause: Optional[BaseException] = None):
    fname = f"{model}.onnx"
    where = candidate_paths(model, models_dir)
    folders = []
    for p in where:
        folder = os.path.dirname(p)
        if folder != BUNDLED_DIR and folder not in folders:  # the package's own folder is not for users
            folders.append(folder)
    why = f" (download failed: {type(cause).__name__}: {cause})" if cause is not None else ""
    return MattingWeightsNotFoundError(
        f"background-removal weights {fname} not found{why}. Put {fname} (rembg's '{model}' model) in "
        f"{folders[0]}"
        + (f" or one of: {', '.join(folders[1:])}" if len(folders) > 1 else "")
        + f"; or set U2NET_HOME or {MODELS_DIR_ENV} to the folder that holds it (rembg downloads it by itself "
        "when online and downloads are allowed); "
        + (
            "or use model 'u2netp', which ships with clipasso; "
            if model != "u2netp" and bundled_weights("u2netp")
            else ""
        )
        + "or turn background removal off."
    )


U2NET_FAMILY = ("u2netp", "u2net", "u2net_human_seg", "silueta")  # rembg's U2netSession & co.: one recipe


class U2NetSession:
    """A U²-Net-family ONNX model run as rembg runs it (its ``U2netpSession.predict``): RGB resized to
    320x320 with Lanczos, scaled by its maximum, ImageNet mean/std; output channel 0 min-max normalised,
    as an 8-bit mask resized back to the picture with Lanczos. Providers and threads as rembg picks them."""

    MEAN, STD, SIZE = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (320, 320)

    def __init__(self, path: str):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if "OMP_NUM_THREADS" in os.environ:  # as rembg's new_session
            threads = int(os.environ["OMP_NUM_THREADS"])
            opts.inter_op_num_threads = threads
            opts.intra_op_num_threads = threads
        available = ort.get_available_providers()
        if ort.get_device() == "GPU" and "CUDAExecutionProvider" in available:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif ort.get_device()[:3] == "GPU" and "ROCMExecutionProvider" in available:
            providers = ["ROCMExecutionProvider", "CPUExecutionProvider"]
        elif "OpenVINOExecutionProvider" in available:
            providers = ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.path = path
        self.inner_session = ort.InferenceSession(path, sess_options=opts, providers=providers)

    def predict(self, img):
        from PIL import Image

        im = np.array(img.convert("RGB").resize(self.SIZE, Image.Resampling.LANCZOS))
        im = im / max(np.max(im), 1e-6)
        x = np.zeros((im.shape[0], im.shape[1], 3))
        for c in range(3):
            x[:, :, c] = (im[:, :, c] - self.MEAN[c]) / self.STD[c]
        feed = {self.inner_session.get_inputs()[0].name: np.expand_dims(x.transpose((2, 0, 1)), 0).astype(np.float32)}
        pred = self.inner_session.run(None, feed)[0][:, 0, :, :]
        hi, lo = np.max(pred), np.min(pred)
        pred = np.squeeze((pred - lo) / (hi - lo))
        mask = Image.fromarray((pred * 255).astype("uint8"), mode="L")
        return [mask.resize(img.size, Image.Resampling.LANCZOS)]


def get_session(model: str = DEFAULT_MATTING_MODEL, models_dir=None, allow_download: bool = True):
    """A cached rembg session for ``model``; see the module doc for where weights come from."""
    if not isinstance(model, str) or not model:
        raise MattingError(f"model must be a rembg model name such as 'u2netp'; got {model!r}")
    path = find_weights(model, models_dir)
    key = (model, path or f"download:{_folders(models_dir)}")
    with _lock:
        if key in _sessions:
            return _sessions[key]
        if path is not None and model in U2NET_FAMILY:
            try:
                session = U2NetSession(path)
            except Exception as exc:  # noqa: BLE001 - onnxruntime reports broken files in several ways
                raise MattingError(
                    f"could not load the background-removal model {path} ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); the file may be truncated or not rembg's '{model}' "
                    "model. Delete it and put a fresh copy there."
                ) from exc
            _sessions[key] = session
            return session
        from rembg import new_session

        if path is not None:
            # rembg finds "<U2NET_HOME>/<model>.onnx" first in its legacy lookup
            try:
                with _rembg_home(os.path.dirname(path)):
                    session = new_session(model)
            except Exception as exc:  # noqa: BLE001 - onnxruntime reports broken files in several ways
                raise MattingError(
                    f"could not load the background-removal model {path} ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); the file may be truncated or not rembg's '{model}' "
                    "model. Delete it and put a fresh copy there."
                ) from exc
        else:
            if not allow_download:
                raise _missing_error(model, models_dir)
            log.info("rembg model %s not on disk; asking rembg to download it", model)
            try:
                folder = (_folders(models_dir) or [None])[0]
                with _rembg_home(folder):
                    session = new_session(model)
            except Exception as exc:  # noqa: BLE001 - network errors come in many types
                raise _missing_error(model, models_dir, exc) from exc
        _sessions[key] = session
        return session


def remove_background(
    image,
    model: str = DEFAULT_MATTING_MODEL,
    threshold: float = 0.5,
    soft: bool = False,
    models_dir=None,
    allow_download: bool = True,
    use_alpha: bool = True,
) -> Matting:
    """The object composited on white and its foreground mask, both at the input resolution.

    image: anything `clipasso.prepare.images.as_rgb` accepts. threshold: mask cut on the model's 0..1
    output. soft: return (and composite with) the soft mask instead of the binary one.
    models_dir: a folder or a list of folders searched first (see the module doc).
    use_alpha: an input that already carries transparency is its own mask (no model is run).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise MattingError(f"threshold must be a number strictly between 0 and 1 (0.5 by default); got {threshold!r}")
    rgb = as_rgb(image).float().cpu()
    h, w = rgb.shape[-2:]

    alpha = None
    if use_alpha:
        try:
            alpha = alpha_of(image)
        except Exception:  # noqa: BLE001 - no usable alpha: run the model
            alpha = None
    if alpha is not None and tuple(alpha.shape) == (h, w) and float(alpha.min()) < 1.0:
        soft_mask = alpha.float().clamp(0, 1)
        used = "alpha"
    else:
        session = get_session(model, models_dir, allow_download)
        out = session.predict(to_pil(rgb))
        pil_mask = out[0] if isinstance(out, (list, tuple)) else out
        arr = np.asarray(pil_mask.convert("L"), dtype=np.float32) / 255.0
        if arr.shape != (h, w):  # rembg returns the input size; guard against odd sessions
            arr = np.asarray(pil_mask.convert("L").resize((w, h)), dtype=np.float32) / 255.0
        soft_mask = torch.from_numpy(arr.copy())
        used = model

    binary = (soft_mask >= threshold).float()
    found = bool(binary.any())
    if not found:
        msg = (
            f"background removal ({used}) found no object above threshold {threshold}; "
            "using the whole image. Try a lower threshold, another model, or turn matting off."
        )
        log.warning(msg)
        warnings.warn(msg, MattingWarning, stacklevel=2)
        soft_mask = torch.ones(h, w)
        binary = torch.ones(h, w)
    mask = soft_mask if soft else binary
    composite = rgb * mask + (1.0 - mask)
    return Matting(image=composite.clamp(0, 1), mask=mask, soft_mask=soft_mask, model=used, found=found)


def clear_sessions() -> None:
    """Forget cached rembg sessions (frees their memory)."""
    with _lock:
        _sessions.clear()


__all__ = [
    "remove_background",
    "Matting",
    "get_session",
    "U2NetSession",
    "U2NET_FAMILY",
    "find_weights",
    "candidate_paths",
    "bundled_weights",
    "available_models",
    "clear_sessions",
    "MattingError",
    "MattingWeightsNotFoundError",
    "MattingWarning",
    "MATTING_MODELS",
    "DEFAULT_MATTING_MODEL",
]
