"""End-to-end tests against a real ComfyUI 0.3.75 (downloaded at test time, never committed)."""
