"""Helpers for tests and benchmarks (never imported by the pipeline): `tiny_models` writes small randomly
initialised open_clip models to disk, in the formats users put in their models folder, so the real loader
reads them (no pretrained weights exist on CI machines); `openai_format` writes CLIP models in OpenAI's
own layout and file format (TorchScript archives, fp16), as users' ``RN101.pt`` / ``ViT-B-32.pt`` are."""
