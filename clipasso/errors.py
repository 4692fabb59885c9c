"""The engine's errors: every one derives from `ClipassoError`, so a caller (the CLI, a node, a batch)
can catch them all and show the message, which always says what was wrong and what to do.

Each stage keeps its own subclass (``ImageError``, ``StrokeError``, ``WeightsNotFoundError``, ...);
they also derive from the built-in class they always were (ValueError, FileNotFoundError), so code that
caught those keeps working. The stage errors that several modules raise are defined here.
"""

from __future__ import annotations


class ClipassoError(Exception):
    """Base class of every error the clipasso engine raises on purpose."""


class PipelineError(ClipassoError, ValueError):
    """A pipeline setting that cannot work; the message says what to change."""


class OptimizeError(ClipassoError, ValueError):
    """Settings or inputs the optimiser cannot work with."""


class AbstractionError(ClipassoError, ValueError):
    """Settings or inputs automatic abstraction or drawing order cannot work with."""


class WeightsNotFoundError(ClipassoError, FileNotFoundError):
    """No usable weights for a CLIP model; the message lists what was tried and where to put the file."""


class WeightsFileError(WeightsNotFoundError):
    """A weights file exists but cannot be used for the model; the message says why."""


class ModelConfigError(ClipassoError, ValueError):
    """A model name or config that open_clip cannot build."""


class VideoError(ClipassoError, ValueError):
    """A clip that cannot be read or written (a missing or broken file, a folder without frames, a
    selection with no frames, PyAV not installed, ...); the message says what was wrong and what to do."""


__all__ = [
    "ClipassoError",
    "PipelineError",
    "OptimizeError",
    "AbstractionError",
    "WeightsNotFoundError",
    "WeightsFileError",
    "ModelConfigError",
    "VideoError",
]
