"""Read a Relax model into the band geometry (:mod:`.bands`) and write the chosen split back.

Done on Relax before fusion, like :mod:`.shard`: every band op is an ordinary conv/pool/
elementwise call on fewer rows, so fusion, lowering, partitioning and placement see plain
operators. The rewritten ``main`` takes the model input as one parameter per first-segment band
(the rows that band needs); :class:`InputSlice` says which rows, and the host cuts them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from generator.aot.graph import const_value
from generator.types import InputSlice
from generator.partition.bands import IDENTITY, BandChoice, Geometry, RowMap, SOp, choose_bands

log = logging.getLogger(__name__)

#: elementwise Relax ops a band applies row by row
ELEMENTWISE = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
               "relax.minimum", "relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh",
               "relax.nn.leakyrelu", "relax.nn.silu", "relax.nn.gelu", "relax.negative",
               "relax.exp", "relax.sqrt", "relax.power"}
#: elementwise ``call_tir`` functions TVM's frontends emit with ``emit_te`` (ONNX Clip), by name
TE_ELEMENTWISE = {"maximum": "maximum", "minimum": "minimum", "add": "add",
                  "subtract": "subtract", "multiply": "multiply", "divide": "divide"}
POOLS = {"relax.nn.max_pool2d", "relax.nn.avg_pool2d"}
#: reductions that, over the rows and columns, are global pools: how bands combine
REDUCTIONS = {"relax.mean": "avg", "relax.max": "max", "relax.sum": "sum"}


@dataclass(frozen=True)
class BandSplit:
    """What the split did (for the log, mesh.json and the benchmarks)."""

    segments: tuple[tuple[int, int, int], ...]     # (first op, last op, bands) per segment
    cut: str                                        # the tensor gathered whole
    cost: float
    peak_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"segments": [list(s) for s in self.segments], "cut": self.cut,
                "peak_bytes": self.peak_bytes}


def _shape(sinfo) -> tuple[tuple[int, ...], str] | None:
    shape = getattr(sinfo, "shape", None)
    vals = getattr(shape, "values", None)
    if vals is None or not all(hasattr(v, "value") for v in vals):
        return None
    return tuple(int(v.value) for v in vals), str(sinfo.dtype)


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class _Reader:
    """The bindings of ``main`` as :class:`SOp` s, with what the writer needs per op."""

    def __init__(self, mod):
        from tvm import relax
        from tvm.ir.expr import Constant

        self.relax, self.Constant = relax, Constant
        self.mod = mod
        self.main = mod["main"]
        self.bindings = [b for blk in self.main.body.blocks for b in blk.bindings]
        self.haxis: dict[Any, int] = {}
        self.kind: dict[int, tuple] = {}       # op index → ("conv"|"pool"|"ew"|"te", ...)
        self.ops: list[SOp] = []
        self.var_of: list[Any] = []
        self.pattern = {gv.name_hint: int(f.attrs["op_pattern"])
                        for gv, f in relax.transform.AnnotateTIROpPattern()(mod).functions.items()
                        if not isinstance(f, relax.Function) and f.attrs is not None
                        and "op_pattern" in f.attrs}
        param = self.main.params[0]
        shp = _shape(param.ty)
        self.input_layout_axis = self._first_layout_axis()
        assert shp is not None
        (shape, dtype) = shp
        ax = self.input_layout_axis
        self.haxis[param] = ax
        self.ops.append(SOp(str(param), shape[ax], _nbytes(shape, dtype) // shape[ax]))
        self.var_of.append(param)
        for b in self.bindings:
            self._read(b)

    def _first_layout_axis(self) -> int:
        for b in self.bindings:
            v = b.value
            name = getattr(getattr(v, "op", None), "name", "")
            if name == "relax.nn.conv2d":
                return str(v.attrs.data_layout).index("H")
            if name in POOLS:
                return str(v.attrs.layout).index("H")
        return 2

    def _global_reduction(self, var, value, shape, dtype, name) -> SOp | None:
        """mean/max/sum over the rows and columns, keeping them (ONNX GlobalAveragePool,
        GlobalMaxPool): reducible by partial reductions of the bands."""
        data = value.args[0]
        ds = _shape(data.ty) if isinstance(data, self.relax.Var) else None
        if ds is None or data not in self.haxis or not bool(value.attrs.keepdims):
            return None
        ax = self.haxis[data]
        wax = 3 if ax == 2 else 2
        if _reduction_axes(value, 4) != sorted((ax, wax)):
            return None
        self.haxis[var] = ax
        self.kind[len(self.ops)] = ("pool", REDUCTIONS[name], wax)
        h = ds[0][ax]
        return SOp(str(var), 1, _nbytes(shape, dtype), _nbytes(*ds) // np.dtype(dtype).itemsize,
                   ((str(data), RowMap(h, 1, 0, 0)),), _nbytes(*ds) + _nbytes(shape, dtype),
                   reducible=True)

    def _nonspatial(self, var, value, shp) -> SOp:
        io = _nbytes(*shp) if shp else 0
        for a in self._tensor_args(value):
            s = _shape(a.ty) if isinstance(a, self.relax.Var) else None
            if s:
                io += _nbytes(*s)
        return SOp(str(var), 1, io, io_bytes=io, spatial=False)

    def _tensor_args(self, value) -> list:
        relax = self.relax
        out = []
        for a in getattr(value, "args", ()):
            if isinstance(a, relax.Tuple):
                out.extend(a.fields)
            elif isinstance(a, relax.Var):
                out.append(a)
        return out

    def _read(self, b) -> None:
        var, value = b.var, b.value
        shp = _shape(var.ty)
        self.var_of.append(var)
        op = self._spatial(var, value, shp)
        self.ops.append(op if op is not None else self._nonspatial(var, value, shp))

    def _spatial(self, var, value, shp) -> SOp | None:
        relax = self.relax
        if shp is None or not isinstance(value, relax.Call) or len(shp[0]) != 4:
            return None
        shape, dtype = shp
        if shape[0] != 1:
            return None
        name = getattr(value.op, "name", "")
        io = _nbytes(shape, dtype)
        if name == "relax.nn.conv2d" or name in POOLS:
            data = value.args[0]
            if not isinstance(data, relax.Var) or data not in self.haxis:
                return None
            at = value.attrs
            layout = str(at.data_layout if name == "relax.nn.conv2d" else at.layout)
            out_layout = str(at.out_layout) or layout
            if layout not in ("NCHW", "NHWC") or out_layout != layout:
                return None
            ax = layout.index("H")
            if self.haxis[data] != ax:
                return None
            if name == "relax.nn.conv2d":
                w = value.args[1]
                if not isinstance(w, self.Constant):
                    return None
                kl = str(at.kernel_layout)
                wshape = tuple(int(d) for d in const_value(w).shape)
                kh, kw = wshape[kl.index("H")], wshape[kl.index("W")]
                cin_g = wshape[kl.index("I")]
                dil = int(at.dilation[0])
                rm = RowMap((kh - 1) * dil + 1, int(at.strides[0]), int(at.padding[0]),
                            int(at.padding[2]))
                macs = (int(np.prod(shape)) // shape[ax]) * cin_g * kh * kw
                self.kind[len(self.ops)] = ("conv",)
            else:
                if bool(at.ceil_mode):
                    return None
                kh, kw = int(at.pool_size[0]), int(at.pool_size[1])
                rm = RowMap((kh - 1) * int(at.dilation[0]) + 1, int(at.strides[0]),
                            int(at.padding[0]), int(at.padding[2]))
                macs = (int(np.prod(shape)) // shape[ax]) * kh * kw
                self.kind[len(self.ops)] = ("pool",)
            ds = _shape(data.ty)
            io += _nbytes(*ds) if ds else 0
            self.haxis[var] = ax
            reducible = False
            if name in POOLS and ds is not None:
                wax = layout.index("W")
                reducible = (shape[ax] == 1 and shape[wax] == 1 and kh == ds[0][ax]
                             and kw == ds[0][wax] and all(int(x) == 0 for x in at.padding))
                if reducible:
                    self.kind[len(self.ops)] = ("pool", "max" if "max" in name else "avg", wax)
            wbytes = int(const_value(value.args[1]).nbytes) if name == "relax.nn.conv2d" else 0
            return SOp(str(var), shape[ax], _nbytes(shape, dtype) // shape[ax], macs,
                       ((str(data), rm),), io, reducible=reducible, weight_bytes=wbytes)
        if name in REDUCTIONS:
            return self._global_reduction(var, value, shape, dtype, name)
        if name in ELEMENTWISE:
            kind, args = ("ew",), list(value.args)
        elif name == "relax.call_tir":
            gv = value.args[0]
            base = re.sub(r"\d+$", "", gv.name_hint)
            if self.pattern.get(gv.name_hint) != 0 or base not in TE_ELEMENTWISE:
                return None
            kind, args = ("te", TE_ELEMENTWISE[base]), list(value.args[1].fields)
        else:
            return None
        ins, consts = [], []
        ax = None
        for a in args:
            if isinstance(a, relax.Var):
                s = _shape(a.ty)
                if a not in self.haxis or s is None or s[0] != shape:
                    return None
                ax = self.haxis[a] if ax is None else ax
                if self.haxis[a] != ax:
                    return None
                ins.append((str(a), IDENTITY))
                io += _nbytes(*s)
            elif isinstance(a, self.Constant):
                consts.append(tuple(int(d) for d in const_value(a).shape))
            else:
                return None
        if not ins:
            return None
        for cs in consts:                   # broadcast from the right: no rows of its own
            k = ax - (4 - len(cs))
            if k >= 0 and cs[k] != 1:
                return None
        self.kind[len(self.ops)] = kind
        self.haxis[var] = ax
        return SOp(str(var), shape[ax], _nbytes(shape, dtype) // shape[ax],
                   _nbytes(shape, dtype) // shape[ax] // np.dtype(dtype).itemsize,
                   tuple(ins), io)


def _reduction_axes(value, ndim: int) -> list[int]:
    axes = value.attrs.axis
    return sorted(int(a) % ndim for a in axes) if axes is not None else list(range(ndim))


def band_split(mod, *, avail: int, cycles_per_mac: float = 10.0,
               cycles_per_link_byte: float = 10.0, max_bands: int = 64,
               weights_in_room: bool = False
               ) -> tuple[Any, BandSplit | None, tuple[InputSlice, ...]]:
    """Split the front of ``mod`` into bands where its activations do not fit ``avail`` bytes.

    Returns the (possibly) rewritten module, what was done (None: nothing), and per program
    input the rows of the model input it carries."""
    from tvm import relax

    mod = relax.transform.FoldConstant()(mod)
    main = mod["main"]
    ident = tuple(InputSlice(i) for i in range(len(main.params)))
    if len(main.params) != 1 or _shape(main.params[0].ty) is None \
            or len(_shape(main.params[0].ty)[0]) != 4:
        return mod, None, ident
    reader = _Reader(mod)
    geo = Geometry(reader.ops, avail, cycles_per_mac, cycles_per_link_byte, max_bands,
                   weights_in_room)
    choice = choose_bands(geo)
    if choice is None:
        return mod, None, ident
    from generator.partition.bands_emit import emit_bands

    new_mod, slices = emit_bands(mod, reader, geo, choice)
    split = BandSplit(tuple((s.first, s.last, s.bands) for s in choice.segments),
                      reader.ops[choice.cut].name, choice.cost,
                      max(s.peak_bytes for s in choice.segments))
    log.info("band split: %s, gathered at %s (peak %d B of %d B)",
             ", ".join(f"ops {a + 1}..{b} in {k} bands" for a, b, k in split.segments),
             split.cut, split.peak_bytes, avail)
    return new_mod, split, slices


__all__ = ["BandChoice", "BandSplit", "InputSlice", "band_split"]
