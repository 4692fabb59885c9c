"""The output stage: Rasterize Strokes (pixels at any size), Save SVG (output node) and Load SVG."""

from __future__ import annotations

import json
import os
from io import BytesIO
from typing import Tuple

from comfy_api.latest import io, ui

from .common import (
    CATEGORY,
    NodeInputError,
    SketchStrokes,
    chw_to_images,
    contained_path,
    hw_to_masks,
    output_path,
    parse_color,
    picture_roots,
    strokes_or_error,
)


def _canvas_size(strokes, width: int, height: int) -> Tuple[int, int]:
    """(H, W) to draw at: 0 keeps the canvas size, one side alone keeps the aspect ratio."""
    ch, cw = strokes.canvas
    if width <= 0 and height <= 0:
        return ch, cw
    if width <= 0:
        return height, max(1, round(cw * height / ch))
    if height <= 0:
        return max(1, round(ch * width / cw)), width
    return height, width


def render_to_comfy(strokes, size=None, background=(1.0, 1.0, 1.0), width_scale=1.0, color=None):
    """Render every candidate -> (IMAGE [B,H,W,3 or 4], MASK [B,H,W] ink opacity)."""
    import torch
    from clipasso.render.raster import render

    with torch.inference_mode(False), torch.no_grad():
        out = render(strokes.cpu(), size=size, background=background, width_scale=width_scale, color=color)
    image, alpha = out.image, out.alpha
    if background is None:  # transparent: straight ink colour plus alpha as a 4th channel
        image = torch.cat([image, alpha.unsqueeze(1)], 1)
    return chw_to_images(image), hw_to_masks(alpha)


class RasterizeStrokes(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoRasterize",
            display_name="Rasterize Strokes (CLIPasso)",
            category=CATEGORY,
            description="Draw SKETCH_STROKES as pixels at any size: every candidate becomes one image of the batch.",
            inputs=[
                SketchStrokes.Input("strokes", tooltip="The sketch(es) to draw; every candidate becomes one image."),
                io.Int.Input(
                    "width",
                    default=0,
                    min=0,
                    max=8192,
                    step=1,
                    tooltip="Output width in pixels. 0 keeps the sketch's canvas width (or follows the "
                    "height, keeping the aspect ratio).",
                ),
                io.Int.Input(
                    "height",
                    default=0,
                    min=0,
                    max=8192,
                    step=1,
                    tooltip="Output height in pixels. 0 keeps the canvas height (or follows the width).",
                ),
                io.String.Input(
                    "stroke_color",
                    default="",
                    tooltip="Draw every stroke in this colour (#rrggbb, #rrggbbaa or a name such as "
                    "'black'); empty keeps each stroke's own colour.",
                ),
                io.Float.Input(
                    "thickness",
                    default=1.0,
                    min=0.05,
                    max=20.0,
                    step=0.05,
                    tooltip="Multiplies every stroke's width (strokes also scale with the output size).",
                ),
                io.String.Input(
                    "background",
                    default="#ffffff",
                    tooltip="Background colour (#rrggbb or a name), or 'transparent' for an RGBA image "
                    "whose 4th channel is the ink.",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "image",
                    display_name="image",
                    tooltip="The drawing(s): RGB over the background, or RGBA when the background is 'transparent'.",
                ),
                io.Mask.Output(
                    "mask",
                    display_name="mask",
                    tooltip="Ink coverage, 1 where a stroke is drawn (usable as a scribble).",
                ),
            ],
        )

    @classmethod
    def execute(cls, strokes, width=0, height=0, stroke_color="", thickness=1.0, background="#ffffff"):
        strokes = strokes_or_error(strokes)
        size = _canvas_size(strokes, int(width), int(height))
        color = parse_color(stroke_color, "stroke_color") if (stroke_color or "").strip() else None
        bg_text = (background or "").strip().lower()
        if bg_text in ("transparent", "none", "alpha"):
            bg = None
        else:
            bg = parse_color(background, "background")[:3]
        if thickness <= 0:
            raise NodeInputError("'thickness' must be positive")
        image, mask = render_to_comfy(strokes, size=size, background=bg, width_scale=float(thickness), color=color)
        return io.NodeOutput(image, mask)


NO_FILE = "(none)"


def _core_svg_class():
    """Core's SVG value class (``SVG(data: list[BytesIO])``): the public ``io.SVG.Type`` where this core
    declares it as a class, else where this core keeps it (0.3.x: comfy_extras.nodes_images); None if absent."""
    import typing

    public = getattr(getattr(io, "SVG", None), "Type", None)
    if isinstance(public, type) and public is not typing.Any and hasattr(public, "combine"):
        return public
    try:
        from comfy_api.latest._util import SVG  # late-2026 cores, before the public type is declared

        return SVG
    except ImportError:
        pass
    try:
        from comfy_extras.nodes_images import SVG  # 0.3.x cores

        return SVG
    except ImportError:
        return None


def svg_documents(value) -> list:
    """The SVG documents (text) of a core SVG value (``.data``: BytesIO, bytes or str), in order."""
    items = getattr(value, "data", value)
    if not isinstance(items, (list, tuple)):
        items = [items]
    docs = []
    for item in items:
        raw = item.getvalue() if hasattr(item, "getvalue") else item
        if isinstance(raw, (bytes, bytearray)):
            raw = bytes(raw).decode("utf-8", errors="replace")
        if not isinstance(raw, str):
            raise NodeInputError(
                f"'svg' must be core's SVG value (SVG documents as BytesIO); got an item of type {type(item).__name__}"
            )
        docs.append(raw)
    if not docs:
        raise NodeInputError("the connected SVG value holds no document")
    return docs


HAS_CORE_SVG = hasattr(io, "SVG") and _core_svg_class() is not None


def with_metadata(svg_text: str, metadata: dict) -> str:
    """Put the workflow JSON into a <metadata> CDATA block right after the opening <svg> tag (as core's
    Save SVG does), so dragging the file back into ComfyUI can restore the graph.

    ``<``, ``>`` and ``&`` in the JSON are written as ``\\u003c`` / ``\\u003e`` / ``\\u0026`` (the same JSON), so
    no markup appears in the block: a prompt holding SVG text (Load SVG's ``svg_text``) cannot end the CDATA
    early, and core's Save SVG, which inserts its own block after every ``<svg`` it finds, still writes
    well-formed XML when it re-saves our SVG."""
    if not metadata:
        return svg_text
    payload = json.dumps(metadata, indent=1).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    start = svg_text.find("<svg")
    end = svg_text.find(">", start)
    if start < 0 or end < 0:
        raise ValueError("not an SVG document: no <svg> element")
    block = f"\n  <metadata><![CDATA[\n{payload}\n]]></metadata>"
    return svg_text[: end + 1] + block + svg_text[end + 1 :]


def _metadata_disabled() -> bool:
    try:
        from comfy.cli_args import args

        return bool(getattr(args, "disable_metadata", False))
    except Exception:  # noqa: BLE001 - no core args: keep metadata
        return False


class SaveSVG(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        outputs = []
        if HAS_CORE_SVG:
            outputs.append(
                io.SVG.Output(
                    "svg",
                    display_name="svg",
                    tooltip="The same drawing(s) as core's SVG type, for core's Save SVG and other SVG nodes.",
                )
            )
        return io.Schema(
            node_id="CLIPassoSaveSVG",
            display_name="Save SVG (CLIPasso)",
            category=CATEGORY,
            description="Write each sketch as an .svg file (one <path> per stroke) into ComfyUI's output folder, "
            "with the workflow embedded as metadata, and preview it in the node.",
            is_output_node=True,
            inputs=[
                SketchStrokes.Input("strokes", tooltip="The sketch(es) to save; every candidate becomes one file."),
                io.String.Input(
                    "filename_prefix",
                    default="clipasso/sketch",
                    tooltip="File name prefix inside the output folder; may contain subfolders and "
                    "ComfyUI's %date:yyyy-MM-dd% style tokens.",
                ),
                # last and optional: saved workflows and API prompts from before load unchanged
                io.Boolean.Input(
                    "animate_frames",
                    default=False,
                    optional=True,
                    tooltip="Write the candidates as the frames of one animated SVG (the stroke sequence of "
                    "CLIPasso Sketch Video: each path's shape changes once per frame) instead of one file per "
                    "candidate. Every candidate must have the same strokes.",
                ),
                io.Float.Input(
                    "fps",
                    default=24.0,
                    min=0.01,
                    max=240.0,
                    step=0.01,
                    optional=True,
                    tooltip="With animate_frames: frames per second of the animation.",
                ),
            ],
            outputs=outputs,
        )

    @classmethod
    def execute(cls, strokes, filename_prefix="clipasso/sketch", animate_frames=False, fps=24.0):
        import folder_paths
        from clipasso.atomic import write_text_atomic
        from clipasso.output.svg import to_svg

        strokes = strokes_or_error(strokes).cpu()
        out_dir = folder_paths.get_output_directory()
        prefix = filename_prefix or "clipasso/sketch"
        # core refuses a prefix whose folder leaves the output folder by name ('..', absolute); this also
        # follows symlinks, before core creates the folder
        output_path(os.path.dirname(os.path.normpath(prefix)), "'filename_prefix'")
        folder, base, counter, subfolder, _ = folder_paths.get_save_image_path(
            prefix, out_dir, strokes.width, strokes.height
        )
        metadata = {}
        hidden = cls.hidden
        if hidden is not None and not _metadata_disabled():
            if hidden.prompt is not None:
                metadata["prompt"] = hidden.prompt
            if hidden.extra_pnginfo:
                metadata.update(hidden.extra_pnginfo)
        results, blobs = [], []
        if animate_frames:
            documents = [_animated_svg(strokes, fps)]
        else:
            documents = (to_svg(strokes, candidate=i) for i in range(strokes.num_candidates))
        for i, svg_text in enumerate(documents):
            text = with_metadata(svg_text, metadata)
            name = f"{base.replace('%batch_num%', str(i))}_{counter + i:05}_.svg"
            write_text_atomic(os.path.join(folder, name), text)
            blobs.append(BytesIO(text.encode("utf-8")))
            results.append(ui.SavedResult(name, subfolder, io.FolderType.output))
        args = (_core_svg_class()(blobs),) if HAS_CORE_SVG else ()
        return io.NodeOutput(*args, ui=ui.SavedImages(results))


def _animated_svg(strokes, fps) -> str:
    """One animated SVG whose frames are the candidates of ``strokes`` (`clipasso.output.animation.video_svg`)."""
    import math

    from clipasso.errors import ClipassoError
    from clipasso.output.animation import video_svg

    rate = float(fps if fps is not None else 24.0)
    if not (math.isfinite(rate) and rate > 0):
        raise NodeInputError(f"'fps' must be a positive number of frames per second; got {fps!r}")
    try:
        return video_svg(strokes, rate)
    except ClipassoError as exc:
        raise NodeInputError(
            f"animate_frames needs the same strokes in every candidate (a stroke sequence from CLIPasso Sketch "
            f"Video): {exc}"
        ) from None


def _input_svgs():
    import folder_paths

    root = folder_paths.get_input_directory()
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith(".svg"):
                found.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return sorted(found)


def _fill_shape_inputs():
    """Load SVG's inputs for filled shapes, after the older ones (saved workflows keep their widget order);
    optional, so API prompts from before they existed still run, reading as before."""
    from clipasso.output.svg import MIN_OUTLINE_AREA, OUTLINE_SEGMENTS

    return [
        io.Boolean.Input(
            "fill_shapes",
            default=False,
            optional=True,
            tooltip="Read filled shapes that have no stroke (what tracers write: ComfyUI-ToSVG, "
            "vtracer, potrace, core's vectorize nodes) as strokes along their outlines, one "
            "per closed outline, so a traced picture becomes a starting sketch for Optimize "
            f"Sketch or Auto Abstraction. Specks under {MIN_OUTLINE_AREA:.2%} of the canvas "
            "and the canvas-sized background are dropped. Off: filled shapes are ignored, as "
            "a sketch is strokes.",
        ),
        io.Int.Input(
            "outline_segments",
            default=OUTLINE_SEGMENTS,
            min=1,
            max=32,
            step=1,
            optional=True,
            tooltip="With fill_shapes: cubic Bezier segments each outline is simplified to (every "
            "outline gets the same number, as the strokes of one sketch share it).",
        ),
        io.Int.Input(
            "max_outlines",
            default=64,
            min=1,
            max=4096,
            step=1,
            optional=True,
            tooltip="With fill_shapes: keep at most this many outlines, the largest; the rest are "
            "dropped (the console says how many).",
        ),
        io.String.Input(
            "outline_color",
            default="",
            optional=True,
            tooltip="With fill_shapes: draw every outline in this colour (#rrggbb or a name such as "
            "'black', as CLIPasso sketches are); empty keeps each shape's fill colour.",
        ),
    ]


class LoadSVG(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CLIPassoLoadSVG",
            display_name="Load SVG (CLIPasso)",
            category=CATEGORY,
            description="Read an SVG of open Bezier paths (as Save SVG writes them; other SVGs' paths, lines and "
            "shapes are read as strokes too) into SKETCH_STROKES, to refine a sketch with Optimize "
            "Sketch or draw it again at another size. Takes a file, pasted markup, or core's SVG type. "
            "With fill_shapes on, a tracer's filled shapes (vtracer, potrace, vectorize nodes) become "
            "strokes along their outlines.",
            inputs=[
                io.Combo.Input(
                    "svg_file",
                    options=[NO_FILE] + _input_svgs(),
                    default=NO_FILE,
                    tooltip="An .svg file in ComfyUI's input folder.",
                ),
                io.String.Input(
                    "svg_text",
                    default="",
                    multiline=True,
                    optional=True,
                    tooltip="Or paste SVG markup here; it is used instead of the file when not empty.",
                ),
            ]
            + (
                [
                    io.SVG.Input(
                        "svg",
                        optional=True,
                        tooltip="Or connect core's SVG type (core's vectorize nodes, Save SVG of this pack, "
                        "...): used instead of the file and the text. Several documents become "
                        "several candidates when they have the same canvas and stroke layout.",
                    )
                ]
                if HAS_CORE_SVG
                else []
            )
            + _fill_shape_inputs(),
            outputs=[
                SketchStrokes.Output(
                    "strokes", display_name="strokes", tooltip="The strokes of the SVG (one candidate)."
                ),
                io.Image.Output(
                    "image", display_name="image", tooltip="The strokes drawn on white at the SVG's canvas size."
                ),
            ],
        )

    @classmethod
    def _source(cls, svg_file, svg_text):
        import folder_paths

        if (svg_text or "").strip():
            return svg_text
        if not svg_file or svg_file == NO_FILE:
            raise NodeInputError("Load SVG needs an .svg file from the input folder or SVG markup in 'svg_text'")
        # 'name [output]' / 'name [temp]' read from those folders, as core's loaders do; nothing else
        # outside the input folder (no '..', absolute path or symlink leading out) unless the owner allows it
        name, base = folder_paths.annotated_filepath(svg_file)
        roots = picture_roots() + [folder_paths.get_output_directory(), folder_paths.get_temp_directory()]
        path = contained_path(
            name,
            roots,
            "'svg_file'",
            "ComfyUI's input, output and temp folders",
            "SVG files may come only from inside them",
            base=base or roots[0],
        )
        if not os.path.isfile(path):
            raise NodeInputError(f"SVG file not found in the input folder: {svg_file}")
        return path

    @classmethod
    def fingerprint_inputs(cls, svg_file=NO_FILE, svg_text="", svg=None, **_fill_options):
        # the fill-shape options are widget values, already part of ComfyUI's cache key
        if svg is not None:
            try:
                return "\n".join(svg_documents(svg))
            except NodeInputError:
                return ""
        try:
            src = cls._source(svg_file, svg_text)
        except NodeInputError:
            return ""
        if src is svg_text:
            return svg_text
        st = os.stat(src)
        return f"{src}:{st.st_mtime_ns}:{st.st_size}"

    @classmethod
    def validate_inputs(cls, svg_file=NO_FILE, svg_text="", svg=NO_FILE):
        if svg is not NO_FILE:  # the svg socket is connected (ComfyUI passes None for a link before it runs)
            return True
        try:
            cls._source(svg_file, svg_text)
        except NodeInputError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(
        cls,
        svg_file=NO_FILE,
        svg_text="",
        svg=None,
        fill_shapes=False,
        outline_segments=None,
        max_outlines=64,
        outline_color="",
    ):
        from clipasso.output.svg import OUTLINE_SEGMENTS, read_svg
        from clipasso.strokes import StrokeError, Strokes

        options = {}
        if fill_shapes:
            options = dict(
                fills="outline",
                segments=int(outline_segments or OUTLINE_SEGMENTS),
                max_outlines=int(max_outlines) if max_outlines else None,
                outline_color=parse_color(outline_color, "outline_color") if (outline_color or "").strip() else None,
            )
        if svg is not None:
            parts = [read_svg(doc, **options) for doc in svg_documents(svg)]
            try:
                strokes = Strokes.concat(parts)
            except StrokeError as exc:
                raise NodeInputError(
                    f"the connected SVG value holds {len(parts)} drawings that cannot be one batch "
                    f"({exc}); pick one of them first"
                ) from None
        else:
            strokes = read_svg(cls._source(svg_file, svg_text), **options)
        image, _ = render_to_comfy(strokes)
        return io.NodeOutput(strokes, image)


NODES = [RasterizeStrokes, SaveSVG, LoadSVG]
