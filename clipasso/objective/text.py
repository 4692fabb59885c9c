"""Text guidance: the CLIP text embedding of a prompt as an extra semantic target.

With a prompt such as "a cat, side view" the loss gains a term

    text_weight * mean over views (1 - cos(e(aug(S)), t))

where ``e`` is the same image embedding the semantic term uses and ``t`` the prompt's text
embedding from the loss model's own text tower, so the sketch of the image is nudged toward the
words. It works with any open_clip model that has a text tower (CLIP ResNets and ViTs, custom
configs with a text_cfg); the tokenizer is the one open_clip pairs with the model name.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ..errors import ClipassoError


class TextGuidanceError(ClipassoError, ValueError):
    """A prompt or a model that text guidance cannot work with; the message says what to change."""


def check_prompt(text) -> Optional[str]:
    """None or a stripped, non-empty prompt; anything else is a clear error."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TextGuidanceError(
            f"the text prompt must be a string such as 'a cat, side view'; got {type(text).__name__}"
        )
    text = " ".join(text.split())
    return text or None


def has_text_tower(encoder) -> bool:
    model = encoder.model
    return callable(getattr(model, "encode_text", None)) and (
        getattr(model, "transformer", None) is not None or getattr(model, "text", None) is not None
    )


def _tokenizer(encoder):
    import open_clip

    ctx = getattr(encoder.model, "context_length", None)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip logs a warning for custom names: SimpleTokenizer is right there
    try:
        return open_clip.get_tokenizer(encoder.name, context_length=ctx)
    except Exception as exc:  # noqa: BLE001 - e.g. an HF tokenizer that is not cached offline
        raise TextGuidanceError(
            f"cannot get the tokenizer of CLIP model {encoder.name!r} "
            f"({type(exc).__name__}: {str(exc)[:200]}); use a model whose tokenizer is "
            "available offline (e.g. RN101, ViT-B-32) or no text prompt"
        ) from exc
    finally:
        root.setLevel(level)


@torch.no_grad()
def encode_text(encoder, text: str) -> torch.Tensor:
    """The prompt's text embedding ``[D]`` (fp32, not normalised) from the encoder's text tower."""
    prompt = check_prompt(text)
    if prompt is None:
        raise TextGuidanceError("the text prompt is empty; give a short description such as 'a cat, side view'")
    if not has_text_tower(encoder):
        raise TextGuidanceError(
            f"the loss model {encoder.name!r} has no text tower (a visual-only checkpoint), so a text prompt "
            "cannot guide it; load a full CLIP model (e.g. RN101 'openai') or leave the prompt empty"
        )
    tokens = _tokenizer(encoder)([prompt])
    if not isinstance(tokens, torch.Tensor):
        tokens = torch.as_tensor(tokens)
    emb_table = getattr(encoder.model, "token_embedding", None)
    vocab = getattr(emb_table, "num_embeddings", None) or getattr(encoder.model, "vocab_size", None)
    if vocab is not None and int(tokens.max()) >= int(vocab):
        raise TextGuidanceError(
            f"the tokenizer of {encoder.name!r} yields token ids up to {int(tokens.max())} but the model's "
            f"text tower knows only {vocab}; its config's text_cfg does not match the tokenizer"
        )
    tokens = tokens.to(encoder.device)
    emb = encoder.model.encode_text(tokens)
    emb = emb.float().reshape(-1)
    if not bool(torch.isfinite(emb).all()) or float(emb.norm()) == 0:
        raise TextGuidanceError(f"the text tower of {encoder.name!r} gave an unusable embedding for {prompt!r}")
    return emb


__all__ = ["encode_text", "check_prompt", "has_text_tower", "TextGuidanceError"]
