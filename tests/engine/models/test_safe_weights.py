"""Weights files never run code: TorchScript archives are read as data (clipasso/models/archive.py).

``torch.jit.load`` compiles an archive's code and runs its ``__setstate__`` methods while loading. The
hostile archives below are real: each test first shows that ``torch.jit.load`` triggers their effect
(a custom operator that records its calls), then that our loader reads the file with nothing run, or
refuses it with a clear `WeightsFileError`.
"""

from __future__ import annotations

import ast
import builtins
import copy
import copyreg
import os
import pickle
import shlex
import sys
import types
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch

from clipasso import models
from clipasso.models import WeightsFileError, load_clip, read_checkpoint
from clipasso.models.archive import read_torchscript_state
from clipasso.testing.openai_format import TINY_RN, TINY_VIT, build_openai_model, save_openai_archive

ROOT = Path(__file__).resolve().parents[3]
EFFECTS = []  # one entry per call of the operator below: the observable effect of code in a file


@torch.library.custom_op("clipasso_test::mark", mutates_args=())
def _mark(x: torch.Tensor) -> torch.Tensor:
    EFFECTS.append(tuple(x.shape))
    return x.clone()


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv(models.MODELS_DIR_ENV, raising=False)
    EFFECTS.clear()
    saved = models.cached_encoders()
    models.clear_cache()
    yield
    models.clear_cache()
    models.restore_cache(saved)


def _jit_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")


def _script_save(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def _rewrite(src, dst, replace=None, drop=(), add=None):
    """Copy the zip ``src`` to ``dst`` entry by entry, replacing / dropping / adding entries."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def _root(path):
    with zipfile.ZipFile(path) as zf:
        return next(n for n in zf.namelist() if n.endswith("/data.pkl")).split("/")[0]


# ---------------------------------------------------------------------------- real-format archives
@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openai_safe")
    rn, vit = build_openai_model(TINY_RN, 0), build_openai_model(TINY_VIT, 1)
    return {
        "rn_model": rn,
        "vit_model": vit,
        "rn": save_openai_archive(rn, folder / "RN101.pt"),
        "vit": save_openai_archive(vit, folder / "ViT-B-32.pt"),
    }


@pytest.mark.parametrize("which", ["rn", "vit"])
def test_real_archives_read_as_data_give_torch_jit_state(archives, which):
    got = read_torchscript_state(archives[which])
    want = _jit_load(archives[which]).state_dict()
    assert list(got) == list(want)  # the same names, in the same order
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k
    assert got["visual.conv1.weight"].dtype == torch.float16 and got["input_resolution"].dtype == torch.int64


@pytest.mark.parametrize("which", ["rn", "vit"])
def test_encoder_from_archive_embeds_as_the_torch_jit_path_did(archives, which):
    name = "RN101" if which == "rn" else "ViT-B-32"
    enc = load_clip(name, "openai", weights=archives[which], allow_download=False)
    # the state the loader used to get from torch.jit.load, put through the same conversion
    old = {
        k: (v.float() if v.is_floating_point() else v)
        for k, v in _jit_load(archives[which]).state_dict().items()
        if k not in ("input_resolution", "context_length", "vocab_size")
    }
    own = enc.model.state_dict()
    for k, v in old.items():
        assert torch.equal(own[k].reshape(v.shape), v), k
    before = copy.deepcopy(enc)
    models.load_weights(before.model, old)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    assert torch.equal(enc.embed(x), before.embed(x))
    # and both are the source model's embedding with the weights as the fp16 file holds them
    src = copy.deepcopy(archives[which + "_model"])
    from clipasso.testing.openai_format import state_dict_fp16_rounded

    src.load_state_dict(state_dict_fp16_rounded(archives[which + "_model"]))
    with torch.no_grad():
        want = src.encode_image(enc.normalize(x))
    assert float((enc.embed(x) - want).norm() / want.norm()) < 1e-5


class _LinearOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 5)
        self.scale = torch.nn.Parameter(torch.randn(5))

    def forward(self, x):
        return self.lin(x) * self.scale


def test_big_endian_archive_is_byte_swapped(tmp_path):
    path = _script_save(_LinearOnly(), tmp_path / "little.pt")
    root = _root(path)
    with zipfile.ZipFile(path) as zf:  # every storage here is fp32: swap each 4-byte word
        swapped = {
            n: torch.frombuffer(bytearray(zf.read(n)), dtype=torch.uint8).view(-1, 4).flip(1).numpy().tobytes()
            for n in zf.namelist()
            if n.startswith(f"{root}/data/")
        }
    swapped[f"{root}/byteorder"] = b"big"
    big = _rewrite(path, tmp_path / "big.pt", replace=swapped)
    want = _jit_load(path).state_dict()
    got = read_torchscript_state(big)
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert not torch.equal(
        read_torchscript_state(_rewrite(big, tmp_path / "unmarked.pt", drop={f"{root}/byteorder"}))["scale"],
        want["scale"],
    )


# ---------------------------------------------------------------------------- hostile archives
class _TupleState(torch.nn.Module):
    """Keeps its state through its own __getstate__/__setstate__, which calls the marking operator."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3))
        self.register_buffer("buf", torch.arange(4))

    def forward(self, x):
        return x * self.w

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.buf, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, torch.Tensor, bool]):
        self.buf = torch.ops.clipasso_test.mark(state[1])
        self.w = state[0]
        self.training = state[2]


class _DictState(torch.nn.Module):
    """A dict state (so its tensors are readable as data), a __setstate__ with an effect and a custom method."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3))
        self.register_buffer("buf", torch.arange(4))

    def forward(self, x):
        return x * self.w

    @torch.jit.export
    def steal(self) -> torch.Tensor:
        return torch.ops.clipasso_test.mark(self.buf)

    @torch.jit.export
    def __getstate__(self) -> Dict[str, torch.Tensor]:
        return {"w": self.w, "buf": self.buf}

    @torch.jit.export
    def __setstate__(self, state: Dict[str, torch.Tensor]):
        self.w = state["w"]
        self.buf = torch.ops.clipasso_test.mark(state["buf"])
        self.training = False


class _Outer(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.lin = torch.nn.Linear(2, 3)

    def forward(self, x):
        return self.inner(x)


def test_setstate_code_runs_in_torch_jit_but_our_loader_refuses_it(tmp_path):
    path = _script_save(_Outer(_TupleState()), tmp_path / "RN101.pt")
    _jit_load(path)
    assert EFFECTS, "torch.jit.load should have run the archive's __setstate__ (the file is not hostile)"
    EFFECTS.clear()
    with pytest.raises(WeightsFileError, match=r"inner .*__getstate__/__setstate__ code.*runs none"):
        read_torchscript_state(path)
    with pytest.raises(WeightsFileError, match="runs none"):
        read_checkpoint(path)  # not re-worded as "truncated": the reason reaches the user
    folder = tmp_path / "models"
    folder.mkdir()
    os.replace(path, folder / "RN101.pt")
    with pytest.raises(models.WeightsNotFoundError, match="runs none"):
        load_clip("RN101", "openai", models_dir=str(folder), allow_download=False)
    assert EFFECTS == []


def test_extra_code_file_and_custom_methods_never_run(tmp_path):
    module = _Outer(_DictState())
    path = _script_save(module, tmp_path / "plain.pt")
    # move the payload into an extra code file, called from __setstate__ and from the custom method
    with zipfile.ZipFile(path) as zf:
        code = {n: zf.read(n).decode() for n in zf.namelist() if "/code/" in n and n.endswith(".py")}
    name, src = next((n, s) for n, s in code.items() if "ops.clipasso_test.mark(" in s)
    root = _root(path)
    hostile = _rewrite(
        path,
        tmp_path / "ViT-B-32.pt",
        replace={name: src.replace("ops.clipasso_test.mark(", "__torch__.payload.run(").encode()},
        drop={name + ".debug_pkl"},
        add={
            f"{root}/code/__torch__/payload.py": b"def run(x: Tensor) -> Tensor:\n  return ops.clipasso_test.mark(x)\n"
        },
    )
    loaded = _jit_load(hostile)
    assert len(EFFECTS) == 1, "torch.jit.load should have run the payload through the extra code file"
    loaded.inner.steal()
    assert len(EFFECTS) == 2
    EFFECTS.clear()
    got = read_torchscript_state(hostile)
    want = module.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert EFFECTS == []


class _Payload:
    """Unpickling this calls ``fn(*args)``: what a hostile data.pkl does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return {
        "os.system": _Payload(os.system, "touch " + shlex.quote(str(marker))),
        "builtins.eval": _Payload(builtins.eval, touch),
        "builtins.exec": _Payload(builtins.exec, touch),
    }


@pytest.fixture
def fake_torch_class(monkeypatch):
    """A class that pickles as ``__torch__.evil M`` (a module object of an archive)."""
    pkg, mod = types.ModuleType("__torch__"), types.ModuleType("__torch__.evil")

    class M:
        def __init__(self, state=None):
            self.state = state

        def __reduce__(self):  # NEWOBJ then BUILD with the attribute dict, as in a real data.pkl
            return (copyreg.__newobj__, (M,), self.state)

    M.__module__, M.__qualname__ = "__torch__.evil", "M"
    mod.M = pkg.evil = M
    monkeypatch.setitem(sys.modules, "__torch__", pkg)
    monkeypatch.setitem(sys.modules, "__torch__.evil", mod)
    return M


@pytest.mark.parametrize("where", ["root", "inside a module"])
@pytest.mark.parametrize("which", ["os.system", "builtins.eval", "builtins.exec"])
def test_disallowed_globals_are_refused_before_anything_runs(archives, tmp_path, fake_torch_class, which, where):
    marker = tmp_path / "code-ran"
    payload = _payloads(marker)[which]
    obj = payload if where == "root" else fake_torch_class({"training": False, "x": payload})
    data = pickle.dumps(obj, protocol=2)
    pickle.loads(data)  # the payload is live: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    root = _root(archives["rn"])
    path = _rewrite(archives["rn"], tmp_path / "RN101.pt", replace={f"{root}/data.pkl": data})
    with pytest.raises(
        WeightsFileError, match=r"asks for (posix|os|nt|builtins|__builtin__)\.(system|eval|exec) .*could run code"
    ):
        read_torchscript_state(path)
    with pytest.raises(WeightsFileError, match="could run code"):
        read_checkpoint(path)
    assert not marker.exists()


# ---------------------------------------------------------------------------- damaged archives
def test_truncated_and_damaged_archives_say_why(archives, tmp_path):
    data = Path(archives["rn"]).read_bytes()
    root = _root(archives["rn"])
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="truncated"):
        read_torchscript_state(cut)
    with pytest.raises(WeightsFileError, match="truncated"):
        read_checkpoint(cut)
    with zipfile.ZipFile(archives["rn"]) as zf:
        pkl = zf.read(f"{root}/data.pkl")
        first = zf.read(f"{root}/data/0")
        info = zf.getinfo(f"{root}/data/0")
    short_pkl = _rewrite(archives["rn"], tmp_path / "pkl.pt", replace={f"{root}/data.pkl": pkl[: len(pkl) // 2]})
    with pytest.raises(WeightsFileError, match="data.pkl cannot be read.*damaged"):
        read_checkpoint(short_pkl)
    short_storage = _rewrite(archives["rn"], tmp_path / "storage.pt", replace={f"{root}/data/0": first[:-4]})
    with pytest.raises(WeightsFileError, match=r"storage 0 holds \d+ bytes.*truncated"):
        read_checkpoint(short_storage)
    flipped = bytearray(data)  # one byte of a storage changed in place: the entry's CRC no longer matches
    local = info.header_offset  # the entry's data follows its local header (whose padding torch sets)
    start = (
        local
        + 30
        + int.from_bytes(data[local + 26 : local + 28], "little")
        + int.from_bytes(data[local + 28 : local + 30], "little")
    )
    assert data[start : start + len(first)] == first
    flipped[start + 1] ^= 0xFF
    bad_crc = tmp_path / "crc.pt"
    bad_crc.write_bytes(bytes(flipped))
    with pytest.raises(WeightsFileError, match="storage 0 is damaged.*download"):
        read_checkpoint(bad_crc)
    no_pickle = _rewrite(archives["rn"], tmp_path / "nopkl.pt", drop={f"{root}/data.pkl"})
    with pytest.raises(WeightsFileError, match="expected one <folder>/data.pkl"):
        read_checkpoint(no_pickle)


# ---------------------------------------------------------------------------- the package never calls them
SCANNED = ["__init__.py", "clipasso", "nodes"]
SAFE_MODULE = "clipasso/models/archive.py"  # the one place that subclasses pickle.Unpickler (find_class gated)
# clipasso/testing/ is scanned too: it only *writes* archives (torch.jit.trace / torch.jit.save), which is
# not a way in for a user's file; were it ever to read one, this test would say so.


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")  # model.to(d).eval(): "<expr>.eval"
    return ".".join(reversed(parts))


def _forbidden_calls(path: Path, rel: str):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    aliases = {}  # local name -> what it was imported as (from pickle import loads as l -> l: pickle.loads)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and rel != SAFE_MODULE:
            for base in node.bases:
                if _dotted(base).endswith("Unpickler"):
                    found.append((node.lineno, "subclasses an Unpickler"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + ("." + rest if rest else "")
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        why = None
        if full in ("torch.jit.load", "jit.load"):
            why = "torch.jit.load runs code from the file"
        elif full in ("eval", "exec", "builtins.eval", "builtins.exec", "compile", "builtins.compile"):
            why = f"{full}()"
        elif full in (
            "pickle.load",
            "pickle.loads",
            "pickle._load",
            "pickle._loads",
            "dill.load",
            "dill.loads",
            "joblib.load",
            "cloudpickle.load",
            "cloudpickle.loads",
        ):
            why = f"{full} runs code from the data"
        elif full.endswith("Unpickler") and rel != SAFE_MODULE:
            why = "an Unpickler outside clipasso/models/archive.py"
        elif full in ("torch.load", "torch.serialization.load"):
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                why = "torch.load without weights_only=True"
        elif full.endswith("load_openai_model") or full.endswith("load_checkpoint"):
            why = f"{full} loads a file with open_clip's / timm's own torch.load"
        elif full.endswith(("create_model", "create_model_and_transforms", "create_model_from_pretrained")):
            pre = kw.get("pretrained")
            if pre is not None and not (isinstance(pre, ast.Constant) and isinstance(pre.value, (bool, type(None)))):
                why = f"{full}(pretrained=<file or tag>) hands a file to the library's own loader"
            if "pretrained_cfg_overlay" in kw:
                why = f"{full}(pretrained_cfg_overlay=...) hands a file to timm's own loader"
        if any(isinstance(v, ast.Constant) and v.value is False for k, v in kw.items() if k == "weights_only"):
            why = "weights_only=False"
        if why:
            found.append((node.lineno, why))
    return found


def test_package_never_calls_code_running_loaders():
    files = []
    for entry in SCANNED:
        p = ROOT / entry
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    assert len(files) > 20 and (ROOT / SAFE_MODULE) in files
    bad = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        bad += [f"{rel}:{line}: {why}" for line, why in _forbidden_calls(f, rel)]
    assert not bad, "calls that could run code from a user's file:\n" + "\n".join(bad)


def test_the_scan_catches_what_it_looks_for(tmp_path):
    # the scan itself must fail on each pattern, and must not flag model.eval() / method calls
    src = (
        "import torch, pickle\nfrom pickle import loads as L\nimport timm, open_clip\n"
        "torch.jit.load(p)\npickle.load(f)\nL(b)\neval('1')\nexec('x=1')\ntorch.load(p)\n"
        "torch.load(p, weights_only=False)\nclass U(pickle.Unpickler): pass\n"
        "timm.create_model('vit', pretrained=True, pretrained_cfg_overlay={'file': p})\n"
        "open_clip.create_model_and_transforms('RN101', pretrained=p)\n"
        "model.eval()\nmodel.to(d).eval()\ntorch.load(p, weights_only=True)\n"
        "open_clip.create_model('RN50', pretrained=False)\n"
    )
    f = tmp_path / "sample.py"
    f.write_text(src)
    lines = [line for line, _ in _forbidden_calls(f, "sample.py")]
    assert sorted(set(lines)) == list(range(4, 14)), lines  # line 14 on: model.eval() and safe calls
