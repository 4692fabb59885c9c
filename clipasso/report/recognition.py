"""Zero-shot recognition of sketches: does a CLIP model that did not draw a sketch name its object?

As the paper judges recognisability: a judge CLIP (with its text tower) classifies each sketch against a
list of class names, with the prompt "a sketch of a {class}." (PHOTO_TEMPLATE for the photos themselves).
`classify` gives the class probabilities, `top_k_hits` whether an accepted name is among the k most probable.
bench/recognition.py runs it over scikit-image's photos with real weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from clipasso.errors import ClipassoError

if TYPE_CHECKING:
    import torch

SKETCH_TEMPLATE = "a sketch of a {}."
PHOTO_TEMPLATE = "a photo of a {}."


class RecognitionError(ClipassoError, ValueError):
    """Class names, images or a model that zero-shot classification cannot work with."""


def default_tokenizer(encoder) -> Callable[[Sequence[str]], "torch.Tensor"]:
    """open_clip's tokenizer for the encoder's model, at the text tower's context length."""
    import open_clip

    ctx = int(getattr(encoder.model, "context_length", 77) or 77)
    return open_clip.get_tokenizer(encoder.name, context_length=ctx)


def text_embeddings(
    encoder, class_names: Sequence[str], template: str = SKETCH_TEMPLATE, tokenizer: Optional[Callable] = None
):
    """L2-normalised text embeddings ``[C, D]`` of ``template.format(name)`` for each class."""
    import torch

    names = [str(c).strip() for c in (class_names or [])]
    if not names:
        raise RecognitionError("class_names is empty: zero-shot classification needs at least one class name")
    if any(not n for n in names):
        raise RecognitionError(f"class names must be non-empty strings; got {list(class_names)!r}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise RecognitionError(f"class names must be distinct; repeated: {dup}")
    model = encoder.model
    if not hasattr(model, "encode_text"):
        raise RecognitionError(f"CLIP model {encoder.name!r} has no text tower, so it cannot classify zero-shot")
    tokens = (tokenizer or default_tokenizer(encoder))([template.format(n) for n in names])
    vocab = getattr(model, "vocab_size", None) or getattr(
        getattr(model, "token_embedding", None), "num_embeddings", None
    )
    if vocab is not None and int(tokens.max()) >= int(vocab):
        raise RecognitionError(
            f"the tokenizer produced token ids up to {int(tokens.max())} but the text tower of "
            f"{encoder.name!r} knows only {vocab}; give the tokenizer that belongs to the model"
        )
    with torch.no_grad():
        feats = model.encode_text(tokens.to(encoder.device)).float()
    return feats / feats.norm(dim=-1, keepdim=True)


def image_embeddings(encoder, images):
    """L2-normalised image embeddings ``[N, D]`` of 0..1 RGB images ``[N,3,H,W]`` (resized to the encoder's size)."""
    import torch
    import torch.nn.functional as F

    x = images.float()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise RecognitionError(f"images must be RGB [N,3,H,W] in 0..1; got {tuple(images.shape)}")
    size = encoder.image_size
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    with torch.no_grad():
        feats = encoder.embed(x).float()
    return feats / feats.norm(dim=-1, keepdim=True)


def zero_shot_probs(image_features, text_features, logit_scale: float = 100.0):
    """Softmax over classes of ``logit_scale`` x cosine similarity: ``[N, D] x [C, D] -> [N, C]``."""
    import torch

    img = image_features.float()
    img = img / img.norm(dim=-1, keepdim=True)
    txt = text_features.float()
    if txt.ndim != 2 or txt.shape[0] == 0:
        raise RecognitionError("no class embeddings given: zero-shot classification needs at least one class")
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return torch.softmax(float(logit_scale) * img @ txt.T, dim=-1)


def logit_scale_of(encoder) -> float:
    scale = getattr(encoder.model, "logit_scale", None)
    if scale is None:
        return 100.0
    return float(scale.detach().float().exp().clamp(max=100.0))


def classify(
    encoder, images, class_names: Sequence[str], template: str = SKETCH_TEMPLATE, tokenizer: Optional[Callable] = None
):
    """Zero-shot class probabilities ``[N, C]`` (rows sum to 1) of 0..1 RGB ``images`` by a CLIP ``encoder``
    (a `clipasso.models.ClipEncoder` with its text tower), in the order of ``class_names``."""
    txt = text_embeddings(encoder, class_names, template, tokenizer)
    img = image_embeddings(encoder, images)
    return zero_shot_probs(img, txt, logit_scale_of(encoder))


def top_k_hits(probs, class_names: Sequence[str], accepted: Sequence[Sequence[str]], k: int) -> List[bool]:
    """Per row: is any accepted class among the ``k`` most probable?"""
    import torch

    kk = min(k, probs.shape[1])
    idx = torch.topk(probs, kk, dim=-1).indices
    return [any(class_names[j] in set(acc) for j in row.tolist()) for row, acc in zip(idx, accepted)]
