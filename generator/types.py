"""Frozen dataclasses passed between stages (DESIGN.md, "Data flow").

Stages pass these, never dicts; each stage module owns the dataclasses it produces, except the
small shared ones here that several stages read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

#: protocols of a PE's host link (UART0): pemesh frames, or the EEMBC / MLPerf Tiny DUT text
HOST_PROTOCOLS = ("pemesh", "eembc")

#: dtypes the whole tool chain understands (numpy names)
SUPPORTED_DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "bool")

_C_IDENT = re.compile(r"[^0-9A-Za-z_]")


def tensor_nbytes(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of a dense tensor of ``shape`` and ``dtype`` (one element for the scalar shape ())."""
    return int(prod(int(d) for d in shape)) * np.dtype(dtype).itemsize


def c_identifier(name: str) -> str:
    """A stable C identifier for a model-level name (``input.1`` → ``input_1``)."""
    ident = _C_IDENT.sub("_", name)
    if not ident or ident[0].isdigit():
        ident = "t_" + ident
    return ident


@dataclass(frozen=True)
class TensorSpec:
    """A model-level tensor: its name, static shape and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def c_name(self) -> str:
        return c_identifier(self.name)

    @property
    def num_elements(self) -> int:
        return int(prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(d["name"], tuple(int(x) for x in d["shape"]), d["dtype"])


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """What a frontend hands on: a Relax module whose ``main`` takes the model inputs.

    Weights are bound as Relax constants (no parameter inputs). Shapes are static.
    """

    name: str                       # C identifier for the model
    source: str                     # path of the model file (or "<memory>")
    format: str                     # "onnx" | "tflite" | "torch"
    mod: Any                        # tvm.IRModule (typed Any: no TVM import at module load)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """One entry of a PE's routing table (docs/CONTRACTS.md §6).

    kind 1 OUTPUT: output ``a`` of this PE goes to PE ``pe`` (0xFFFF = host) as input ``b``.
    kind 2 SOURCE: input ``a`` of this PE comes from PE ``pe``'s output ``b`` (READY goes back).
    """

    kind: int
    a: int
    pe: int
    b: int

    OUTPUT = 1
    SOURCE = 2

    def to_json(self) -> list[int]:
        return [self.kind, self.a, self.pe, self.b]

    @classmethod
    def from_json(cls, v) -> "Route":
        return cls(int(v[0]), int(v[1]), int(v[2]), int(v[3]))


@dataclass(frozen=True)
class AppSpec:
    """Everything needed to render one PE's Zephyr application (``render_pe_app``)."""

    pe_name: str                        # folder under OUT/pes/, e.g. "pe0"
    pe_id: int                          # 0..65534 (0xFFFF is the host)
    board: str                          # Zephyr board, e.g. "qemu_cortex_m3"
    stage: str                          # stage name == C model name: tvmgen_<stage>_run
    inputs: tuple[TensorSpec, ...]      # the stage's inputs (order = TENSOR stream index)
    outputs: tuple[TensorSpec, ...]
    workspace_size: int                 # arena bytes of the stage (static, inside the model C)
    model_dir: str                      # the stage's unpacked MLF, relative to the app folder
    main_stack_size: int = 2048
    role: str = "single"                # "single" (issue 2) or "stage" (a mesh PE)
    routes: tuple[Route, ...] = ()      # mesh routing table (role "stage")
    flags: int = 0                      # pemesh_pe_config.flags
    defines: tuple[str, ...] = ()       # extra C definitions ("NAME" or "NAME=VALUE")
    host_protocol: str = "pemesh"       # link 0: "pemesh" frames or "eembc" (MLPerf Tiny DUT)
    model_name: str = ""                # the model's name, for the EEMBC "name" reply
    #: host protocol eembc on a mesh's entry PE: the model outputs the exit PEs send it
    eembc_results: tuple[TensorSpec, ...] = ()
    #: host protocol eembc: (output name, scale, zero point) of quantized model outputs
    dequant: tuple[tuple[str, float, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "pe_name": self.pe_name, "pe_id": self.pe_id, "board": self.board,
            "stage": self.stage, "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "workspace_size": self.workspace_size, "model_dir": self.model_dir,
            "main_stack_size": self.main_stack_size, "role": self.role,
            "routes": [r.to_json() for r in self.routes], "flags": self.flags,
            "defines": list(self.defines), "host_protocol": self.host_protocol,
            "model_name": self.model_name,
            "eembc_results": [t.to_json() for t in self.eembc_results],
            "dequant": [list(d) for d in self.dequant],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "AppSpec":
        return cls(
            pe_name=d["pe_name"], pe_id=int(d["pe_id"]), board=d["board"], stage=d["stage"],
            inputs=tuple(TensorSpec.from_json(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in d["outputs"]),
            workspace_size=int(d["workspace_size"]), model_dir=d["model_dir"],
            main_stack_size=int(d.get("main_stack_size", 2048)), role=d.get("role", "single"),
            routes=tuple(Route.from_json(r) for r in d.get("routes", ())),
            flags=int(d.get("flags", 0)), defines=tuple(d.get("defines", ())),
            host_protocol=d.get("host_protocol", "pemesh"), model_name=d.get("model_name", ""),
            eembc_results=tuple(TensorSpec.from_json(t) for t in d.get("eembc_results", ())),
            dequant=tuple((str(n), float(sc), int(zp)) for n, sc, zp in d.get("dequant", ())))


@dataclass(frozen=True)
class InputSlice:
    """Program input ``i`` is rows ``[start, stop)`` on ``axis`` of model input
    ``model_input`` (``axis`` None: the whole input). A band split
    (generator/partition/bands.py) feeds the model input to its first bands as such slices,
    which the host cuts."""

    model_input: int
    axis: int | None = None
    start: int = 0
    stop: int = 0

    def to_json(self) -> dict:
        return {"model_input": self.model_input, "axis": self.axis, "start": self.start,
                "stop": self.stop}

    @classmethod
    def from_json(cls, d) -> "InputSlice":
        axis = d.get("axis")
        return cls(int(d["model_input"]), None if axis is None else int(axis),
                   int(d.get("start", 0)), int(d.get("stop", 0)))

    def cut(self, x):
        """These rows of ``x`` (a numpy array of the model input's shape)."""
        if self.axis is None:
            return x
        idx = [slice(None)] * x.ndim
        idx[self.axis] = slice(self.start, self.stop)
        return np.ascontiguousarray(x[tuple(idx)])

    def spec(self, model_input: "TensorSpec") -> "TensorSpec":
        """The program input's TensorSpec."""
        if self.axis is None:
            return model_input
        shape = list(model_input.shape)
        shape[self.axis] = self.stop - self.start
        return TensorSpec(f"{model_input.name}_rows{self.start}_{self.stop}", tuple(shape),
                          model_input.dtype)
