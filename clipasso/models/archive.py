"""Reading the tensors of a TorchScript archive without running anything from it.

OpenAI released its CLIP weights (``RN101.pt``, ``ViT-B-32.pt``, ...) as TorchScript archives.
``torch.jit.load`` compiles the archive's code and runs some of it while loading (a class's
``__setstate__`` for one), so a file that merely looks like ``RN101.pt`` could run whatever its
author wrote. This module reads such a file as data only.

The archive is a zip file with one top folder ``<root>/``:

- ``<root>/data.pkl``: the module tree, pickled (protocol 2). Each module is an object of a class
  named ``__torch__.<module path> <Class>`` (``__torch__.torch.nn.modules.conv Conv2d``,
  ``__torch__.torch.nn.modules.conv.___torch_mangle_3 Conv2d`` for a specialised copy), created
  empty and then given its state by the BUILD opcode: a dict of attribute name -> value, holding its
  parameters, buffers, submodules and plain attributes (``training``, ...) side by side. A class
  whose code defines ``__getstate__`` stores whatever that returned instead (often a tuple).
- A tensor in the pickle is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``;
  its storage is a persistent id ``("storage", torch.<Type>Storage, key, location, numel)`` whose
  bytes are the zip entry ``<root>/data/<key>``, in the byte order named by ``<root>/byteorder``
  (little-endian when that entry is absent, as in files written before torch 2.0).
- ``<root>/constants.pkl`` and ``<root>/constants/``: tensors the traced code uses as constants.
- ``<root>/code/__torch__/...py``: the TorchScript source of every class. Which attributes are
  parameters and buffers (what ``state_dict()`` returns) is declared there as
  ``__parameters__ = [...]`` and ``__buffers__ = [...]``; those two lists are read with
  ``ast.parse`` + ``ast.literal_eval``, which never runs the source.
- ``<root>/version``, ``<root>/.data/``, ``<root>/code/...debug_pkl``: not needed here.

`read_torchscript_state` unpickles ``data.pkl`` with a `pickle.Unpickler` whose ``find_class``
hands out only: tensor rebuilding, storage types, ``collections.OrderedDict``, the list helpers of
``torch.jit._pickle`` and ``torch.device``; every ``__torch__`` class becomes an inert
`ScriptObjectState` that just keeps its state. Any other global (``os.system``, ``builtins.eval``,
...) stops the read with a `WeightsFileError`. The module tree is then walked into the state dict
``torch.jit.load(path).state_dict()`` would give, with the same dotted names.
"""

from __future__ import annotations

import ast
import io
import pickle
import sys
import zipfile
import zlib
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import WeightsFileError

# torch.<Name>Storage in the pickle -> the dtype of its elements
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
_MAX_DEPTH = 200  # module nesting; OpenAI's deepest is about 6
_MAX_CODE_BYTES = 16 << 20  # a class's source file larger than this is not parsed for its declarations


class ScriptObjectState:
    """What a TorchScript object of the archive becomes: its pickled state, kept as data.

    It has no behaviour: BUILD calls ``__setstate__`` when a class defines one, and this one only
    stores the state (a dict of attributes, or whatever a custom ``__getstate__`` wrote)."""

    __slots__ = ("state",)
    torch_class = "__torch__"  # the archive's class name, set on each per-archive subclass

    def __setstate__(self, state) -> None:
        object.__setattr__(self, "state", state)

    def __repr__(self) -> str:
        return f"<{self.torch_class} (data only)>"


class _Frozen(type):
    """Metaclass of the per-archive stand-in classes: a pickle cannot set attributes on them."""

    def __setattr__(cls, name, value):
        raise WeightsFileError(f"the archive tried to change class {cls.torch_class} while loading")


class _Sealed:
    """Base of the helper objects ``find_class`` hands out: a pickle cannot give them state."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise WeightsFileError("the archive tried to change a loader helper while loading")

    def __setstate__(self, state):
        raise WeightsFileError("the archive tried to give state to a loader helper while loading")


class _StorageType(_Sealed):
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)


class _Storage(_Sealed):
    """One storage of the archive: a flat tensor of its elements (shared by the tensors viewing it)."""

    __slots__ = ("flat", "key")

    def __init__(self, flat: torch.Tensor, key: str):
        object.__setattr__(self, "flat", flat)
        object.__setattr__(self, "key", key)


class _Call(_Sealed):
    """An allowed function, wrapped so the pickle cannot alter it (``__defaults__`` and the like)."""

    __slots__ = ("fn", "name")

    def __init__(self, fn, name: str):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name)

    def __call__(self, *args):
        return self.fn(*args)


def _ints(value, what: str) -> Tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise WeightsFileError(f"a tensor's {what} is not a list of integers ({type(value).__name__})")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` (and the older ``_rebuild_tensor``) on our storages:
    a strided view of the storage. ``requires_grad``, backward hooks and metadata are ignored."""
    if not isinstance(storage, _Storage):
        raise WeightsFileError(f"a tensor is built on {type(storage).__name__}, not on a storage of the archive")
    if type(offset) is not int:
        raise WeightsFileError("a tensor's storage offset is not an integer")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise WeightsFileError(f"a tensor's size {size} and stride {stride} do not match")
    try:
        return torch.as_strided(storage.flat, size, stride, offset)
    except RuntimeError as exc:  # out of the storage's bounds, negative sizes, ...
        raise WeightsFileError(f"a tensor does not fit its storage {storage.key} ({str(exc)[:160]})") from exc


def _tagged(value, _type_name=None):
    return value  # torch.jit._pickle.restore_type_tag: the value, its TorchScript type name dropped


def _as_list(value):
    if not isinstance(value, list):
        raise WeightsFileError("a list attribute of the archive is not a list")
    return list(value)


_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch.jit._pickle", "build_intlist"): _as_list,
    ("torch.jit._pickle", "build_doublelist"): _as_list,
    ("torch.jit._pickle", "build_boollist"): _as_list,
    ("torch.jit._pickle", "build_tensorlist"): _as_list,
    ("torch.jit._pickle", "restore_type_tag"): _tagged,
}
_TYPES = {("collections", "OrderedDict"): OrderedDict, ("torch", "device"): torch.device}


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl``, rebuilding tensors and nothing else (see the module docstring)."""

    def __init__(self, data: bytes, archive: "_Archive"):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._classes: Dict[str, type] = {}  # fresh per archive: nothing carries over to the next file

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            full = f"{module}.{name}"
            cls = self._classes.get(full)
            if cls is None:
                cls = _Frozen(
                    name, (ScriptObjectState,), {"__slots__": (), "torch_class": full, "__module__": __name__}
                )
                self._classes[full] = cls
            return cls
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        fn = _FUNCTIONS.get((module, name))
        if fn is not None:
            return _Call(fn, f"{module}.{name}")
        typ = _TYPES.get((module, name))
        if typ is not None:
            return typ
        raise WeightsFileError(
            f"{self._archive.path} asks for {module}.{name} while loading, which no weights file needs and which "
            f"could run code; it was not loaded. Use the original file from the model's publisher, "
            f"or a .safetensors file"
        )

    def persistent_load(self, pid):
        if (
            not isinstance(pid, tuple)
            or len(pid) != 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or type(pid[4]) is not int
        ):
            raise WeightsFileError(
                f"{self._archive.path} refers to something other than a tensor storage ({type(pid).__name__})"
            )
        return self._archive.storage(pid[2], pid[1].dtype, pid[4])


class _Archive:
    """The zip file: its root folder, byte order, storages (read on first use) and class declarations."""

    def __init__(self, zf: zipfile.ZipFile, path: str):
        self.zf, self.path = zf, path
        self.names = set(zf.namelist())
        roots = sorted(n[: -len("/data.pkl")] for n in self.names if n.endswith("/data.pkl") and n.count("/") == 1)
        if len(roots) != 1:
            raise WeightsFileError(
                f"{path} is not a TorchScript archive: expected one <folder>/data.pkl, found {len(roots)}"
            )
        self.root = roots[0]
        order = self._read(f"{self.root}/byteorder") if f"{self.root}/byteorder" in self.names else b"little"
        order = order.strip().decode("ascii", "replace")
        if order not in ("little", "big"):
            raise WeightsFileError(f"{path} names an unknown byte order {order[:20]!r}")
        self.swap = order != sys.byteorder
        self._storages: Dict[str, _Storage] = {}
        self._declared: Dict[str, Optional[Dict[str, Tuple[bool, List[str]]]]] = {}

    def _read(self, name: str) -> bytes:
        return self.zf.read(name)

    def storage(self, key: str, dtype: torch.dtype, numel: int) -> _Storage:
        hit = self._storages.get(key)
        if hit is not None:
            if hit.flat.dtype != dtype:
                raise WeightsFileError(f"{self.path}: storage {key} is used with two element types")
            return hit
        entry = f"{self.root}/data/{key}"
        if "/" in key or entry not in self.names:
            raise WeightsFileError(f"{self.path} has no storage {key!r} (a truncated or altered file?)")
        info = self.zf.getinfo(entry)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if numel < 0 or info.file_size != numel * itemsize:
            raise WeightsFileError(
                f"{self.path}: storage {key} holds {info.file_size} bytes, but {numel} elements "
                f"of {dtype} need {numel * itemsize} (a truncated or altered file?)"
            )
        buf = bytearray(info.file_size)
        try:
            with self.zf.open(info) as f:  # zipfile checks the entry's CRC when the read reaches its end
                view, got = memoryview(buf), 0
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
                if got != len(buf) or f.read(1):
                    raise WeightsFileError(f"{self.path}: storage {key} is shorter or longer than its entry says")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise WeightsFileError(
                f"{self.path}: storage {key} is damaged ({type(exc).__name__}: {str(exc)[:120]}); "
                f"download the file again"
            ) from exc
        if numel == 0:
            flat = torch.empty(0, dtype=dtype)
        else:
            flat = torch.frombuffer(buf, dtype=torch.uint8)
            if self.swap and itemsize > 1:
                flat = flat.view(-1, itemsize).flip(1).reshape(-1)
            flat = flat.view(dtype)
        st = _Storage(flat, key)
        self._storages[key] = st
        return st

    def declared(self, torch_class: str) -> Optional[Dict[str, Tuple[bool, List[str]]]]:
        """For the classes of the source file of ``torch_class``: {class name: (is a Module, parameter and
        buffer names)}; None when the source is missing or unreadable (then every tensor attribute counts)."""
        module = torch_class.rsplit(".", 1)[0]
        entry = f"{self.root}/code/{module.replace('.', '/')}.py"
        if entry in self._declared:
            return self._declared[entry]
        out: Optional[Dict[str, Tuple[bool, List[str]]]] = None
        if entry in self.names and self.zf.getinfo(entry).file_size <= _MAX_CODE_BYTES:
            try:
                tree = ast.parse(self._read(entry).decode("utf-8"))  # parsed as text, never compiled or run
                out = {}
                for node in tree.body:
                    if isinstance(node, ast.ClassDef):
                        is_module = any(isinstance(b, ast.Name) and b.id == "Module" for b in node.bases)
                        names: List[str] = []
                        for stmt in node.body:
                            if (
                                isinstance(stmt, ast.Assign)
                                and len(stmt.targets) == 1
                                and isinstance(stmt.targets[0], ast.Name)
                                and stmt.targets[0].id in ("__parameters__", "__buffers__")
                            ):
                                value = ast.literal_eval(stmt.value)
                                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                                    names += value
                        out[node.name] = (is_module, names)
            except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, UnicodeDecodeError):
                out = None
        self._declared[entry] = out
        return out


def _state_dict(root: ScriptObjectState, archive: _Archive) -> "OrderedDict[str, torch.Tensor]":
    """The parameters and buffers of the rebuilt module tree under dotted names, as ``state_dict()``
    of the loaded module would list them: a module's own, then its submodules' in attribute order."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def visit(obj: ScriptObjectState, prefix: str, path: Tuple[int, ...]) -> None:
        if len(path) > _MAX_DEPTH or id(obj) in path:
            raise WeightsFileError(f"{archive.path}: the module tree is cyclic or too deep")
        state = getattr(obj, "state", None)
        if not isinstance(state, dict):
            raise WeightsFileError(
                f"{archive.path}: module {prefix.rstrip('.') or '(root)'} ({obj.torch_class}) keeps its state through "
                f"its own __getstate__/__setstate__ code, so its weights cannot be read without running code from "
                f"the file, and this loader runs none. OpenAI's CLIP files have no such code: use the original "
                f"file, or a .safetensors file"
            )
        decl = archive.declared(obj.torch_class)
        cls_name = obj.torch_class.rsplit(".", 1)[1]
        declared = decl.get(cls_name) if decl else None
        if declared is not None:
            for name in declared[1]:
                value = state.get(name)
                if isinstance(value, torch.Tensor):
                    out[prefix + name] = value
        for name, value in state.items():
            if not isinstance(name, str):
                raise WeightsFileError(f"{archive.path}: an attribute name is not a string ({type(name).__name__})")
            if declared is None and isinstance(value, torch.Tensor):
                out[prefix + name] = value
            elif isinstance(value, ScriptObjectState):
                sub = archive.declared(value.torch_class)
                sub_decl = sub.get(value.torch_class.rsplit(".", 1)[1]) if sub else None
                if sub_decl is None or sub_decl[0]:  # a submodule (plain TorchScript class objects are skipped)
                    visit(value, f"{prefix}{name}.", path + (id(obj),))

    visit(root, "", ())
    return out


def read_torchscript_state(path) -> "OrderedDict[str, torch.Tensor]":
    """The state dict (parameters and buffers, dotted names, the file's dtypes, on the CPU) of the
    TorchScript archive at ``path``, read without running any code from it.

    Raises `WeightsFileError` saying why for a file that is not such an archive, is truncated or
    corrupt, asks for anything beyond tensors, or keeps a module's state in its own code."""
    path = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            archive = _Archive(zf, path)
            data = archive._read(f"{archive.root}/data.pkl")
            try:
                root = _ArchiveUnpickler(data, archive).load()
            except WeightsFileError:
                raise
            except RecursionError as exc:
                raise WeightsFileError(f"{path}: its data.pkl nests too deeply to be a weights file") from exc
            except Exception as exc:  # noqa: BLE001 - a damaged pickle stream: EOF, bad opcodes, bad arguments
                raise WeightsFileError(
                    f"{path}: its data.pkl cannot be read ({type(exc).__name__}: "
                    f"{str(exc)[:160]}); the file may be truncated or damaged: download it "
                    f"again"
                ) from exc
            if not isinstance(root, ScriptObjectState):
                raise WeightsFileError(f"{path}: its data.pkl holds a {type(root).__name__}, not a TorchScript module")
            return _state_dict(root, archive)
    except WeightsFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, KeyError) as exc:
        raise WeightsFileError(
            f"{path} is not a readable TorchScript archive ({type(exc).__name__}: "
            f"{str(exc)[:160]}); it may be truncated: download it again"
        ) from exc


__all__ = ["read_torchscript_state", "ScriptObjectState"]
