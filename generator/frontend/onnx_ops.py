"""Which ONNX nodes pemesh can take: TVM's Relax ONNX converters, and no data-dependent shapes;
and the ONNX nodes behind a Relax operator an error names."""

from __future__ import annotations

from typing import Any

from generator.errors import UnsupportedModelError
from generator.types import ImportedModel


def _node_desc(node: Any, index: int) -> str:
    label = repr(node.name) if node.name else f"#{index} (unnamed)"
    dom = f", domain {node.domain}" if node.domain not in ("", "ai.onnx") else ""
    return f"node {label} (op {node.op_type}{dom})"


#: ONNX ops whose output shape depends on the data, and what to do instead
DATA_DEPENDENT_OPS = {
    "NonZero": "replace the NonZero + gather with a mask multiply (x * (x != 0)) at export",
    "Unique": "compute the unique values outside the model, or replace them with a "
              "fixed-size operation",
    "NonMaxSuppression": "run non-maximum suppression on the host after the model",
    "Compress": "replace Compress with a mask multiply, or move it after the model",
}


def onnx_nodes_of_relax_op(model: ImportedModel, relax_op: str) -> list[str]:
    """The ONNX nodes of ``model`` that TVM's importer turns into ``relax_op`` (by name:
    ``relax.topk`` ← TopK), for errors that TVM raises about the Relax op."""
    key = relax_op.rpartition(".")[2].replace("_", "").lower()
    return [f"node {n!r} (op {op})" if n else f"an unnamed {op} node"
            for n, op in model.meta.get("nodes", ()) if op.lower() == key]


def check_onnx_ops(graph: Any) -> None:
    """Every node (also in subgraphs) must have a converter in TVM's Relax ONNX frontend."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    supported = set(_get_convert_map()) | {"Constant", "If"}
    bad: list[str] = []

    def walk(g: Any) -> None:
        for i, node in enumerate(g.node):
            if node.domain in ("", "ai.onnx") and node.op_type in DATA_DEPENDENT_OPS:
                raise UnsupportedModelError(
                    f"{_node_desc(node, i)} gives an output whose shape depends on the input "
                    "data; pemesh compiles graphs whose every shape is known at compile time",
                    hint=DATA_DEPENDENT_OPS[node.op_type])
            if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
                bad.append(_node_desc(node, i))
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(graph)
    if bad:
        more = f" (and {len(bad) - 1} more: {', '.join(bad[1:6])})" if len(bad) > 1 else ""
        raise UnsupportedModelError(
            f"{bad[0]} is not supported by TVM's Relax ONNX frontend{more}",
            hint="replace the op with supported ones (e.g. with onnx-simplifier or at export), "
                 "or check the list in tvm.relax.frontend.onnx.onnx_frontend._get_convert_map()")
