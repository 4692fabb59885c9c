"""The pack's icon (docs/icon.png, 400x400; the registry allows up to 800x400): CLIPasso's own sketch of
scikit-image's horse silhouette, made with the weights-free trace loss so anyone can remake it offline:

    python docs/make_icon.py
"""

from pathlib import Path

import torch


def main():
    import clipasso
    from clipasso.prepare.images import to_pil
    from clipasso.render.raster import render

    torch.manual_seed(0)
    from skimage import data

    horse = torch.from_numpy(data.horse().astype("float32"))  # True = white paper, False = the horse
    picture = horse.unsqueeze(0).expand(3, -1, -1).clone()
    result = clipasso.sketch(
        picture,
        preset="fast",
        loss="trace",
        saliency="none",
        strokes=20,
        seeds=2,
        iterations=400,
        device="cpu",
        allow_download=False,
        background_removal=True,
        framing="pad",
    )
    strokes = result.strokes
    image = render(strokes, size=(400, 400), width_scale=1.4).image[0]
    to_pil(image).save(Path(__file__).resolve().parent / "icon.png", optimize=True)
    print("wrote docs/icon.png,", strokes)


if __name__ == "__main__":
    main()
