"""CLIPasso engine: semantically-aware object sketching (Vinker et al., TOG 2022). No ComfyUI imports."""
from .strokes import Strokes, StrokeError

__all__ = ["Strokes", "StrokeError"]
__version__ = "0.1.0"
