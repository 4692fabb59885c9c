"""`sketch_many(..., engine="ray")`: the pictures as Ray tasks, on an existing cluster or a local Ray.

Each worker is an actor that loads the models once (they stay cached in its process) and sketches the
pictures it is sent. The driver sends each picture's bytes and gets back the SVG text, the PNG bytes and
the figures, so workers need no shared disk; the driver writes every output and manifest line as
results arrive (in completion order). One GPU per actor where the cluster has GPUs, else one CPU per
actor (its torch uses that many threads). Ray is optional: ``pip install -e ".[ray]"``.

Lost workers (a process killed, out of memory, a node gone) cost at most a retry of the picture the
worker held, through Ray's own fault tolerance: every actor has ``max_restarts``, so Ray starts a dead
one again (on another node when its own is gone); the driver gives a worker one picture at a time, and
after a failure it waits for the worker to be back (a ``ready`` call that Ray retries until the restart
is done, ``max_task_retries=-1``) before handing it another, so nothing is queued on a dead process. The
picture itself goes back to the front of the queue and the next free worker, live or restarted, takes
it. A picture whose worker died ``tries`` times is recorded as an error naming Ray's cause, and the rest
go on. Ray does not retry picture tasks itself (``max_task_retries=0``): the driver counts the tries.
A worker Ray cannot bring back (its restarts spent) leaves the pool; with none left, the pictures not yet
done are recorded as errors (a rerun resumes them). Each task is named ``clipasso:<picture name>`` (Ray's
dashboard and state API show that name, and the worker's process title is ``ray::clipasso:<picture
name>`` while it sketches it).
"""

from __future__ import annotations

import collections
import os
import re
from typing import Iterator, List, Optional, Tuple

from . import RAY_TRIES, BatchError, Item

TASK_PREFIX = "clipasso:"


def _ray():
    try:
        import ray
    except ImportError:
        raise BatchError(
            "engine 'ray' needs Ray: pip install -e \".[ray]\" (or pip install ray), or use the local engine"
        ) from None
    return ray


def task_name(item: Item) -> str:
    """The Ray task name of a picture's sketch (the same for every try)."""
    return TASK_PREFIX + item.name


def _lost_worker_errors(ray) -> tuple:
    """Ray's exceptions that mean the process (or node) running a task went away, not that the task failed."""
    names = (
        "RayActorError",
        "WorkerCrashedError",
        "NodeDiedError",
        "ObjectLostError",
        "OutOfMemoryError",
        "LocalRayletDiedError",
    )
    return tuple(getattr(ray.exceptions, n) for n in names if isinstance(getattr(ray.exceptions, n, None), type))


def _cause(exc: BaseException, limit: int = 300) -> str:
    """Ray's reason in one short line: the exception's first sentence and the worker's exit type and detail."""
    text = " ".join(str(exc).split())
    first = re.split(r"(?<=\.) ", text, maxsplit=1)[0]
    exit_part = re.search(r"Worker exit type: .*", text)
    cause = first + (" " + exit_part.group(0) if exit_part and exit_part.group(0) not in first else "")
    cause = f"{type(exc).__name__}: {cause}"
    return cause if len(cause) <= limit else cause[: limit - 3].rstrip() + "..."


class _Worker:
    """The actor's body: one process that keeps its models loaded between pictures."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))

    def ready(self) -> int:
        return os.getpid()

    def sketch(self, data: bytes, suffix: str, settings, png: bool, png_size):
        from . import sketch_bytes

        return sketch_bytes(data, suffix, settings, png_size=png_size, png=png)


def run_on_ray(
    items: List[Item],
    settings,
    *,
    png: bool = False,
    png_size: Optional[int] = None,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    should_stop=None,
    tries: int = RAY_TRIES,
) -> Iterator[Tuple[Item, dict]]:
    """Yield (item, outcome) once per picture as the workers finish them (see the module docstring).
    A picture left out (``should_stop``) is not yielded."""
    if not items:
        return
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise BatchError(f"the Ray tries per picture must be a whole number of at least 1; got {tries!r}")
    ray = _ray()
    lost = _lost_worker_errors(ray)
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": workers or os.cpu_count() or 1}
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, **kwargs)
    pool: list = []
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        count = workers or (gpus if gpus else cpus)
        count = max(1, min(count, len(items)))
        per_cpu = 1 if gpus else max(1, cpus // count)
        # every death costs some picture a try, so a run never needs more restarts than this; the bound
        # stops an actor that dies while starting from being restarted for ever
        actor = ray.remote(
            num_gpus=1 if gpus else 0, num_cpus=per_cpu, max_restarts=tries * len(items), max_task_retries=0
        )(_Worker)
        if gpus:  # a worker on a GPU machine sketches on its GPU
            settings = settings.replace(device="cuda") if settings.device == "auto" else settings
        pool = [actor.remote(per_cpu) for _ in range(count)]
        free = list(pool)
        queue = collections.deque(items)
        pending = {}  # ObjectRef -> (item, worker); item None: the worker's ready() after a failure
        deaths = {}  # item.name -> how many times its worker died while sketching it
        stopping, gone = False, "unknown"

        def dispatch():
            while free and queue and not stopping:
                item = queue.popleft()
                try:
                    data = item.path.read_bytes()
                except OSError as exc:
                    yield item, {"error": f"cannot read {item.path}: {exc.strerror or exc}"}
                    continue
                worker = free.pop(0)
                ref = worker.sketch.options(name=task_name(item)).remote(
                    data, item.path.suffix, settings, png, png_size
                )
                pending[ref] = (item, worker)

        def recover(worker):  # hand the worker nothing until Ray has it running again
            pending[worker.ready.options(max_task_retries=-1).remote()] = (None, worker)

        def working():  # a picture in flight, or pictures waiting for a worker that Ray is bringing back
            return any(item is not None for item, _ in pending.values()) or (
                bool(queue) and bool(pending) and not stopping
            )

        yield from dispatch()
        while working():
            done, _ = ray.wait(list(pending), num_returns=1)
            item, worker = pending.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except lost as exc:
                if item is None:  # Ray could not bring the worker back: it leaves the pool
                    gone = _cause(exc)
                else:
                    recover(worker)
                    deaths[item.name] = deaths.get(item.name, 0) + 1
                    if deaths[item.name] < tries:
                        queue.appendleft(item)  # the next free worker, live or restarted, tries it again
                    else:
                        yield (
                            item,
                            {
                                "error": f"its Ray worker process died {deaths[item.name]} times while "
                                f"sketching it (last: {_cause(exc)}); if the picture is not what "
                                "kills it (out of memory?), run the batch again"
                            },
                        )
            except Exception as exc:  # noqa: BLE001 - anything else: recorded, the batch goes on
                if item is None:
                    gone = f"{type(exc).__name__}: {str(exc)[:200]}"
                else:
                    recover(worker)
                    yield item, {"error": f"the Ray worker failed: {type(exc).__name__}: {str(exc)[:300]}"}
            else:
                free.append(worker)
                if item is not None:
                    yield item, outcome
            if should_stop is not None and should_stop():
                stopping = True
            yield from dispatch()
            if queue and not pending and not stopping:  # every worker is gone for good (Ray gave up on them)
                while queue:
                    yield (
                        queue.popleft(),
                        {"error": f"no Ray worker left to sketch it (the last one lost: {gone}); run the batch again"},
                    )
    finally:
        if started_here:
            ray.shutdown()
        else:  # a cluster that outlives the run gets its CPUs and GPUs back now
            for worker in pool:
                try:
                    ray.kill(worker)
                except Exception:  # noqa: BLE001 - already gone
                    pass


__all__ = ["run_on_ray", "task_name"]
