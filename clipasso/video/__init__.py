"""Video: a clip sketched with the same strokes in every frame (`sketch_video`), its frames read and
written (`clipasso.video.io`), the motion between frames (`clipasso.video.flow`) and the temporal term
(`clipasso.objective.temporal`, a term of the objective)."""

from .io import (
    IMAGE_SUFFIXES,
    MAX_FRAMES,
    VIDEO_SUFFIXES,
    ClipInfo,
    FrameSource,
    VideoWriter,
    open_clip_source,
    write_video,
)
from .sketch import FrameResult, from_picture_frame, replace_lost, sketch_video, total_steps, video_settings

__all__ = [
    "FrameResult",
    "sketch_video",
    "video_settings",
    "total_steps",
    "from_picture_frame",
    "replace_lost",
    "open_clip_source",
    "FrameSource",
    "ClipInfo",
    "VideoWriter",
    "write_video",
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MAX_FRAMES",
]
