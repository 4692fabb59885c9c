"""CLIP weights: frozen open_clip image encoders for the CLIPasso losses and saliency, loaded from files
whose code never runs.

One module per job:

- `search`: where weights come from, in this order: ``weights=FILE`` (an explicit checkpoint; if it
  cannot be used, that is the error); ``models_dir`` (one folder or a list; ComfyUI passes
  ``models/clipasso``), then the folders in the ``CLIPASSO_MODELS_DIR`` environment variable; the
  caches downloads go to (``~/.cache/clip``, the Hugging Face hub cache); and the one error that says
  which file to put into which folder, what was wrong with each file found and every path looked at.
- `checkpoint`: a file's format and its state dict (safetensors, ``torch.save`` state dicts read with
  ``weights_only=True``, OpenAI's TorchScript archives read as data by `archive`), in fp32.
- `architecture`: the open_clip model the state dict belongs to, built by open_clip (the named
  model's config, a ``<name>.json`` config beside the weights, or open_clip's reading of an OpenAI
  state dict's shapes when the file's sizes differ from the named model's, with a warning).
- `encoder`: `ClipEncoder`, the frozen model plus its input size and normalisation.
- `download`: fetching on purpose (``clipasso download-weights``) and open_clip's own download as the
  last step of the search (only when ``allow_download`` is true and the hub is not set offline).
- `loader`: `load_clip` puts those together: a candidate that cannot be used (truncated, another
  model, pickled code) is skipped with a warning and the next one is tried; loaded encoders are cached.

Nothing is loaded or downloaded at import.
"""

from ..errors import ModelConfigError, WeightsFileError, WeightsNotFoundError
from ..settings import DEFAULT_LOSS_MODEL, DEFAULT_PRETRAINED, DEFAULT_SALIENCY_MODEL, MODELS_DIR_ENV
from .architecture import build_model, load_weights, model_for_state, named_config
from .checkpoint import is_torchscript_archive, read_checkpoint
from .download import fetch_url, fetch_weights
from .encoder import OPENAI_MEAN, OPENAI_STD, ClipEncoder, wrap_model
from .loader import cached_encoders, clear_cache, download_weights, forget, load_clip, loss_encoder, restore_cache
from .search import (
    HF_WEIGHT_NAMES,
    WEIGHT_EXTS,
    candidate_paths,
    clean_name,
    find_weight_files,
    model_names_in,
    official_file_name,
    suggested_folder,
)

__all__ = [
    "ModelConfigError",
    "WeightsFileError",
    "WeightsNotFoundError",
    "DEFAULT_LOSS_MODEL",
    "DEFAULT_PRETRAINED",
    "DEFAULT_SALIENCY_MODEL",
    "MODELS_DIR_ENV",
    "build_model",
    "load_weights",
    "model_for_state",
    "named_config",
    "is_torchscript_archive",
    "read_checkpoint",
    "fetch_url",
    "fetch_weights",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "ClipEncoder",
    "wrap_model",
    "cached_encoders",
    "clear_cache",
    "download_weights",
    "forget",
    "load_clip",
    "loss_encoder",
    "restore_cache",
    "HF_WEIGHT_NAMES",
    "WEIGHT_EXTS",
    "candidate_paths",
    "clean_name",
    "find_weight_files",
    "model_names_in",
    "official_file_name",
    "suggested_folder",
]
