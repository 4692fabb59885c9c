"""Remove Background (matting) with rembg."""

from __future__ import annotations

from comfy_api.latest import io

from .common import CATEGORY, chw_to_images, hw_to_masks, images_to_chw, models_dirs
from .inputs import setting_input, widget_default


def _matting_models():
    # the static list, not rembg's: listing must not import rembg (and onnxruntime) at start-up
    from clipasso.prepare.matting import MATTING_MODELS

    return list(MATTING_MODELS)


class RemoveBackground(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        models = _matting_models()
        return io.Schema(
            node_id="CLIPassoRemoveBackground",
            display_name="Remove Background (CLIPasso)",
            category=CATEGORY,
            description="Cut the object out with a rembg matting model (U2-Net family) and put it on white, "
            "as CLIPasso does before sketching. Pictures with transparency use their own alpha.",
            inputs=[
                io.Image.Input("image", tooltip="Picture(s) of an object; each picture of a batch is matted."),
                setting_input(
                    "model",
                    field="matting_model",
                    options=models,
                    tooltip="rembg model, looked for as <model>.onnx in every models/clipasso folder, "
                    "$CLIPASSO_MODELS_DIR, then rembg's own folder. u2netp (small and fast, "
                    "4.6 MB) ships with the pack; u2net is the full U2-Net the original "
                    "CLIPasso used (176 MB, downloaded on first use).",
                ),
                io.Float.Input(
                    "threshold",
                    default=0.5,
                    min=0.01,
                    max=0.99,
                    step=0.01,
                    tooltip="Mask cut on the model's 0..1 output; lower keeps more of the picture.",
                ),
                io.Boolean.Input(
                    "soft_mask", default=False, tooltip="Keep the model's soft 0..1 mask instead of a hard cut."
                ),
                setting_input(
                    "allow_download",
                    tooltip="Let rembg download the model into (the first) models/clipasso when it is not on "
                    "disk (first use only; u2netp never needs it).",
                ),
            ],
            outputs=[
                io.Image.Output("matted_image", display_name="image", tooltip="The object composited on white."),
                io.Mask.Output("object_mask", display_name="mask", tooltip="The object mask, 1 = object."),
            ],
        )

    @classmethod
    def execute(
        cls,
        image,
        model=widget_default("matting_model"),
        threshold=0.5,
        soft_mask=False,
        allow_download=widget_default("allow_download"),
    ):
        from clipasso.prepare.matting import remove_background

        folders = models_dirs()  # all of them (extra_model_paths.yaml may add several)
        images, masks = [], []
        images_to_chw(image)  # validates the batch
        for picture in image:  # [H,W,C]; an RGBA picture is its own mask
            out = remove_background(
                picture.detach().float().cpu().clone(),
                model=model,
                threshold=float(threshold),
                soft=bool(soft_mask),
                models_dir=folders,
                allow_download=bool(allow_download),
            )
            images.append(out.image)
            masks.append(out.mask)
        return io.NodeOutput(chw_to_images(images), hw_to_masks(masks))


NODES = [RemoveBackground]
