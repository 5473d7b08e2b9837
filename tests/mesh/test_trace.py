"""``pemesh run --trace``: a Chrome Trace Event file, checked against the format's schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from generator.cli import main
from tests import paths

#: the Trace Event Format (the JSON Object form), as far as pemesh writes it: complete ("X"),
#: instant ("i") and metadata ("M") events with microsecond timestamps
TRACE_SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "traceEvents": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "ph", "pid", "tid"],
            "properties": {
                "name": {"type": "string"}, "pid": {"type": "integer"},
                "tid": {"type": "integer"}, "ph": {"enum": ["X", "i", "M"]},
                "ts": {"type": "number", "minimum": 0}, "dur": {"type": "number", "minimum": 0},
                "s": {"enum": ["g", "p", "t"]}, "args": {"type": "object"}},
            "allOf": [
                {"if": {"properties": {"ph": {"const": "X"}}},
                 "then": {"required": ["ts", "dur"]}},
                {"if": {"properties": {"ph": {"const": "i"}}}, "then": {"required": ["ts"]}},
                {"if": {"properties": {"ph": {"const": "M"}}},
                 "then": {"properties": {"name": {"enum": ["process_name", "thread_name"]}},
                          "required": ["args"]}}]}}}}


@pytest.mark.timeout(300)
def test_trace_of_a_mesh_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(paths.EXAMPLES / "tiny_cnn.onnx"), "-o", str(out),
                 "--mesh", "qemu4", "--max-pes", "2"]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    trace = tmp_path / "t.json"
    assert main(["run", str(out), "--platform", "host", "--count", "3", "--trace", str(trace),
                 "--bitflip-rate", "0.2"]) == 0
    doc = json.loads(trace.read_text())
    jsonschema.validate(doc, TRACE_SCHEMA)
    ev = doc["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in ev if e["ph"] == "M"}
    assert {(1, "PEs"), (2, "mesh links"), (3, "host links")} <= {(e["pid"], e["args"]["name"])
                                                                 for e in ev
                                                                 if e["name"] == "process_name"}
    assert (1, "pe0 (tiny_cnn_s0)") in names and (1, "pe1 (tiny_cnn_s1)") in names
    compute = [e for e in ev if e["name"] == "compute"]
    assert sorted({e["tid"] for e in compute}) == [0, 1]
    assert all(e["dur"] > 0 for e in compute) and len(compute) >= 2 * 3
    link = [e for e in ev if e["pid"] == 2 and e["ph"] == "X"]
    assert any(e["name"] == "TENSOR" for e in link) and any(e["name"] == "READY" for e in link)
    assert any(e["ph"] == "i" and e["name"].startswith("retransmit") for e in ev)
    assert any(e["pid"] == 3 and e["name"].startswith("→ TENSOR") for e in ev)
    assert "trace written to" in capsys.readouterr().out
