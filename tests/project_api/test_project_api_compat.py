"""Compatibility with a TVM ≤0.18 client, written from docs/PROJECT_API.md (not from our client).

Speaks raw JSON lines to the template's server and to a generated project's server, started the
way old TVM did (``python microtvm_api_server.py --read-fd R --write-fd W``, cwd = the folder), and
checks the exact field names and JSON types of every reply.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import paths
from generator.paths import templates_dir

from tests.hil.toy_mlf import make_toy_mlf

TEMPLATE = templates_dir() / "project_api"
OPTION_KEYS = {"name", "type", "default", "choices", "required", "optional", "help"}
METHODS = {"generate_project", "build", "flash", "open_transport"}


class RawServer:
    """An old-TVM-style launch: two pipes, sys.executable, cwd = the project folder."""

    def __init__(self, folder: Path):
        s_read, c_write = os.pipe()
        c_read, s_write = os.pipe()
        env = dict(os.environ, PYTHONPATH=str(paths.REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "microtvm_api_server.py", "--read-fd", str(s_read),
             "--write-fd", str(s_write)], cwd=folder, pass_fds=(s_read, s_write), env=env)
        os.close(s_read)
        os.close(s_write)
        self.rfile = os.fdopen(c_read, "rb")
        self.wfile = os.fdopen(c_write, "wb", buffering=0)
        self.next_id = 1

    def call(self, method: str, params: dict) -> dict:
        self.next_id += 1
        self.wfile.write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                                     "id": self.next_id}).encode() + b"\n")
        line = self.rfile.readline()
        assert line.endswith(b"\n"), "replies are newline-terminated"
        reply = json.loads(line.decode("utf-8"))
        assert reply["jsonrpc"] == "2.0" and reply["id"] == self.next_id
        assert ("result" in reply) != ("error" in reply)
        if "error" in reply:
            err = reply["error"]
            assert set(err) == {"code", "message", "data"}
            assert isinstance(err["code"], int) and isinstance(err["message"], str)
        return reply

    def close(self):
        self.wfile.close()
        self.rfile.close()
        assert self.proc.wait(30) == 0


def _check_info(result: dict, is_template: bool) -> None:
    assert set(result) == {"platform_name", "is_template", "model_library_format_path",
                           "project_options", "protocol_version"}
    assert isinstance(result["platform_name"], str)
    assert result["is_template"] is is_template
    assert isinstance(result["model_library_format_path"], str)
    assert (result["model_library_format_path"] == "") == is_template
    assert result["protocol_version"] == 1
    for opt in result["project_options"]:
        assert set(opt) == OPTION_KEYS, opt
        assert opt["type"] in ("bool", "str", "int")
        assert isinstance(opt["name"], str) and isinstance(opt["help"], str)
        assert opt["choices"] is None or isinstance(opt["choices"], list)
        for key in ("required", "optional"):
            assert opt[key] is None or (isinstance(opt[key], list) and set(opt[key]) <= METHODS)
        if opt["default"] is not None:
            want = {"bool": bool, "str": str, "int": int}[opt["type"]]
            assert type(opt["default"]) is want, opt


@pytest.mark.timeout(60)
def test_template_replies():
    srv = RawServer(TEMPLATE)
    try:
        _check_info(srv.call("server_info_query", {"tvm_version": "0.18.0"})["result"], True)
        err = srv.call("server_info_query", {"tvm_version": "0.6.0"})["error"]
        assert err["code"] == -32000 and err["message"] == "UnsupportedTVMVersionError"
        assert isinstance(err["data"]["traceback"], str)
        for method in ("read_transport", "write_transport"):
            params = {"n": 4, "timeout_sec": 0.1} if method == "read_transport" else \
                {"data": base64.b85encode(b"hi").decode(), "timeout_sec": None}
            err = srv.call(method, params)["error"]
            assert err["code"] == -32000 and err["message"] == "TransportClosedError"
        assert srv.call("close_transport", {}) == {"jsonrpc": "2.0", "id": srv.next_id,
                                                   "result": None}
        assert srv.call("no_such_method", {})["error"]["code"] == -32601
        assert srv.call("build", {})["error"]["code"] == -32602
        err = srv.call("build", {"options": {}})["error"]
        assert err["code"] == -32000 and "build" in err["message"]
    finally:
        srv.close()


@pytest.mark.timeout(300)
def test_generated_project_replies(tmp_path):
    mlf = make_toy_mlf(tmp_path / "toy.tar")
    project = tmp_path / "project"
    srv = RawServer(TEMPLATE)
    try:
        # an old client may send only some options; crt dir is a string there
        reply = srv.call("generate_project", {
            "model_library_format_path": str(mlf), "standalone_crt_dir": str(tmp_path / "crt"),
            "project_dir": str(project), "options": {"board": "qemu_cortex_m3"}})
        assert reply["result"] is None
    finally:
        srv.close()
    srv = RawServer(project)
    try:
        _check_info(srv.call("server_info_query", {"tvm_version": "0.18.0"})["result"], False)
        assert srv.call("build", {"options": {"build_backend": "host"}})["result"] is None
        assert srv.call("flash", {"options": {}})["result"] is None
        result = srv.call("open_transport", {"options": {}})["result"]
        assert set(result) == {"timeouts"}
        assert set(result["timeouts"]) == {"session_start_retry_timeout_sec",
                                           "session_start_timeout_sec",
                                           "session_established_timeout_sec"}
        assert all(isinstance(v, float) for v in result["timeouts"].values())
        # PING frame to the host link (CONTRACTS §1): the PE answers with a PONG frame
        from generator.wire import Frame, FrameType, encode
        ping = encode(Frame(FrameType.PING, src=0xFFFF, dst=0, stream=0, seq=0, chunk=0,
                            nchunks=1, payload=b""))
        w = srv.call("write_transport", {"data": base64.b85encode(ping).decode(),
                                         "timeout_sec": 5.0})
        assert w["result"] is None
        got = b""
        while len(got) < 2:
            data = srv.call("read_transport", {"n": 64, "timeout_sec": 5.0})["result"]
            assert set(data) == {"data"} and isinstance(data["data"], str)
            chunk = base64.b85decode(data["data"])
            assert 1 <= len(chunk) <= 64
            got += chunk
        assert got[:2] == b"\xa5\x5a"
        err = srv.call("generate_project", {
            "model_library_format_path": str(mlf), "standalone_crt_dir": None,
            "project_dir": str(project), "options": {}})["error"]
        assert err["code"] == -32000
        assert srv.call("close_transport", {})["result"] is None
        assert srv.call("close_transport", {})["result"] is None
    finally:
        srv.close()
