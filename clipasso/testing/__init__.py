"""Helpers for tests and benchmarks (never imported by the pipeline): `tiny_models` writes small randomly
initialised open_clip models to disk, in the formats users put in their models folder, so the real loader
reads them (no pretrained weights exist on CI machines)."""
