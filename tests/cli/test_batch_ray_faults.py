"""`sketch_many(engine="ray")` when Ray workers die: a worker process SIGKILLed mid-picture costs only a
retry of that picture in the same run; a picture that kills its worker every time is recorded as an error
naming Ray's cause after ``ray_tries`` tries while the rest finish; a resume redoes only that one.

One local Ray (2 CPUs) for the module. The worker running a picture is found by its process title, which
Ray sets to ``ray::<task name>`` while the task runs (the engine names each task after its picture)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from clipasso.batch import BatchError, Item, sketch_many
from clipasso.batch.ray_engine import task_name
from clipasso.cli import main
from clipasso.settings import SketchSettings

from tests.cli.test_batch import QUICK, QUICK_FLAGS, _picture

ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
psutil = pytest.importorskip("psutil")

# a second or two per picture on an idle 2-core CPU (the first on a worker also imports the engine),
# so a kill lands mid-picture
SLOW = dict(QUICK, iterations=30)
NAMES = ("a", "b", "c", "d")
LIMIT = 300.0  # seconds any one batch here may take, even on a busy machine


def _bounded(**kwargs):
    """`sketch_many(**kwargs)` that fails the test instead of hanging when a batch never ends."""
    box = {}

    def run():
        try:
            box["result"] = sketch_many(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"the batch did not end within {LIMIT:.0f} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def four(tmp_path):
    for i, name in enumerate(NAMES):
        _picture(tmp_path / "in" / f"{name}.png", 10 + i)
    return tmp_path / "in"


def _worker_running(name: str):
    """The pid of the Ray worker process now running the task named ``name`` (None when none is)."""
    title = "ray::" + name
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].strip() == title:
            return proc.info["pid"]
    return None


class Killer(threading.Thread):
    """SIGKILLs the worker running the task ``name`` each time one appears (at most ``times`` times), once
    it has run that task for ``after`` seconds; gives up after ``limit`` seconds."""

    def __init__(self, name: str, times: int, after: float = 0.8, limit: float = 150.0):
        super().__init__(daemon=True)
        self.name_, self.times, self.after, self.limit = name, times, after, limit
        self.killed = []
        self.done = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.limit
        seen = {}
        while not self.done.is_set() and len(self.killed) < self.times and time.monotonic() < deadline:
            pid = _worker_running(self.name_)
            if pid is not None and pid not in self.killed:
                first = seen.setdefault(pid, time.monotonic())
                if time.monotonic() - first >= self.after and _worker_running(self.name_) == pid:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.05)


def _manifest(out):
    return [json.loads(raw) for raw in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_worker_killed_mid_picture_costs_only_a_retry(local_ray, four, tmp_path):
    out = tmp_path / "out"
    killer = Killer(task_name(Item(four / "b.png", "b")), times=1)
    killer.start()
    try:
        result = _bounded(
            inputs=[four], out_dir=out, settings=SketchSettings.from_preset(**SLOW), engine="ray", workers=2, png=True
        )
    finally:
        killer.done.set()
        killer.join(5)
    assert len(killer.killed) == 1, "the worker sketching b was never seen (or never killed)"
    assert sorted(line["name"] for line in result.lines) == list(NAMES)  # one line per picture, none twice
    assert all(line["status"] == "ok" for line in result.lines), [line["error"] for line in result.lines]
    assert _manifest(out) == result.lines
    for name in NAMES:
        assert (out / f"{name}.svg").read_text().count("<path") == 4 and (out / f"{name}.png").is_file()
    assert not [p for p in out.rglob("*") if p.name.startswith(".clipasso-")]  # no temporary file left


def test_a_picture_that_kills_its_worker_every_time_is_an_error_and_resume_redoes_only_it(local_ray, four, tmp_path):
    out = tmp_path / "out"
    settings = SketchSettings.from_preset(**SLOW)
    (four / "d.png").unlink()  # three pictures are enough here
    killer = Killer(task_name(Item(four / "c.png", "c")), times=5, after=0.1)
    killer.start()
    try:
        result = _bounded(inputs=[four], out_dir=out, settings=settings, engine="ray", workers=2, ray_tries=2)
    finally:
        killer.done.set()
        killer.join(5)
    assert len(killer.killed) == 2  # two tries, each on a worker that was then killed; no third
    by_name = {line["name"]: line for line in result.lines}
    assert sorted(by_name) == ["a", "b", "c"] and _manifest(out) == result.lines
    assert [n for n in "abc" if by_name[n]["status"] == "ok"] == ["a", "b"]
    error = by_name["c"]["error"]
    assert by_name["c"]["status"] == "error" and "worker process died 2 times" in error
    assert "Actor" in error or "Worker" in error, error  # Ray's own cause, e.g. ActorDiedError / ActorUnavailableError
    assert not (out / "c.svg").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.svg")}

    again = _bounded(inputs=[four], out_dir=out, settings=settings, engine="ray", workers=2, ray_tries=2)
    statuses = {line["name"]: line["status"] for line in again.lines}
    assert statuses == {"a": "skipped", "b": "skipped", "c": "ok"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.svg") if p.name != "c.svg"} == stamps
    assert len(_manifest(out)) == 6  # one line per picture per run


def test_ray_tries_must_be_at_least_one(four, tmp_path, capsys):
    with pytest.raises(BatchError, match="ray_tries must be a whole number of at least 1"):
        sketch_many([four], tmp_path / "out", SketchSettings.from_preset(**QUICK), engine="ray", ray_tries=0)
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(four), "-o", str(tmp_path / "cli"), *QUICK_FLAGS, "--ray-tries", "2"])
    assert exc.value.code == 2 and "--ray-tries are for --engine ray" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(four), "-o", str(tmp_path / "cli"), *QUICK_FLAGS, "--engine", "ray", "--ray-tries", "0"])
    assert exc.value.code == 2 and "--ray-tries must be at least 1" in capsys.readouterr().err
