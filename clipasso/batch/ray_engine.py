"""`sketch_many(..., engine="ray")`: the pictures as Ray tasks, on an existing cluster or a local Ray.

Each worker is an actor that loads the models once (they stay cached in its process) and sketches the
pictures it is sent. The driver sends each picture's bytes and gets back the SVG text, the PNG bytes and
the figures, so workers need no shared disk; the driver writes every output and manifest line as
results arrive (in completion order). One GPU per actor where the cluster has GPUs, else one CPU per
actor (its torch uses that many threads). Ray is optional: ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

import os
from typing import Iterator, List, Optional, Tuple

from . import BatchError, Item


def _ray():
    try:
        import ray
    except ImportError:
        raise BatchError("engine 'ray' needs Ray: pip install -e \".[ray]\" (or pip install ray), or use the "
                         "local engine") from None
    return ray


class _Worker:
    """The actor's body: one process that keeps its models loaded between pictures."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))

    def sketch(self, data: bytes, suffix: str, settings, png: bool, png_size):
        from . import sketch_bytes

        return sketch_bytes(data, suffix, settings, png_size=png_size, png=png)


def run_on_ray(items: List[Item], settings, *, png: bool = False, png_size: Optional[int] = None,
               address: Optional[str] = None, workers: Optional[int] = None, should_stop=None
               ) -> Iterator[Tuple[Item, dict]]:
    """Yield (item, outcome) as the workers finish them (see the module docstring)."""
    if not items:
        return
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": workers or os.cpu_count() or 1}
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        count = workers or (gpus if gpus else cpus)
        count = max(1, min(count, len(items)))
        per_cpu = 1 if gpus else max(1, cpus // count)
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=per_cpu)(_Worker)
        if gpus:  # a worker on a GPU machine sketches on its GPU
            settings = settings.replace(device="cuda") if settings.device == "auto" else settings
        pool = [actor.remote(per_cpu) for _ in range(count)]
        pending, queue = {}, list(items)

        def submit(worker):
            item = queue.pop(0)
            try:
                data = item.path.read_bytes()
            except OSError as exc:
                return item, {"error": f"cannot read {item.path}: {exc.strerror or exc}"}
            pending[worker.sketch.remote(data, item.path.suffix, settings, png, png_size)] = (item, worker)
            return None

        for worker in pool:
            while queue:
                failed = submit(worker)
                if failed is None:
                    break
                yield failed
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            item, worker = pending.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a worker that died: recorded, the batch goes on
                outcome = {"error": f"the Ray worker failed: {type(exc).__name__}: {str(exc)[:300]}"}
            yield item, outcome
            if should_stop is not None and should_stop():
                queue.clear()
            while queue:
                failed = submit(worker)
                if failed is None:
                    break
                yield failed
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["run_on_ray"]
