"""Project API protocol tests: server and client over in-memory pipes and over a real subprocess.

This file doubles as a Project API server script: run as ``__main__`` it serves
:class:`LoopbackHandler` (a byte-loopback "device"), which the subprocess tests copy into a
temporary project folder as ``microtvm_api_server.py``.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import sys
import threading
import time

from generator.project_api.protocol import (ErrorCode, IoTimeoutError, JSONRPCError,
                                            ProjectOption, ServerError, ServerInfo,
                                            TransportClosedError, TransportTimeouts,
                                            UnsupportedTVMVersionError)
from generator.project_api.server import ProjectAPIHandler, ProjectAPIServer, main

OPTIONS = (
    ProjectOption("board", "str", default="qemu_cortex_m3", required=("generate_project",),
                  help="board"),
    ProjectOption("verbose", "bool", default=False, optional=("build", "flash"), help="verbose"),
    ProjectOption("stack", "int", default=2048, optional=("generate_project",), help="stack"),
    ProjectOption("mode", "str", default="a", choices=("a", "b"), optional=("build",),
                  help="mode"),
)


class LoopbackHandler(ProjectAPIHandler):
    """A device that echoes: written bytes come back on read. ``options["hangup"]`` at open
    makes the device hang up once its buffer is drained (EOF)."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.buf = bytearray()
        self.open = False
        self.hangup = False

    def server_info_query(self, tvm_version):
        if tvm_version.startswith("0.7"):
            raise UnsupportedTVMVersionError()
        return ServerInfo("loopback", True, "", OPTIONS)

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir,
                         options):
        assert isinstance(model_library_format_path, pathlib.Path)
        assert isinstance(project_dir, pathlib.Path)
        self.calls.append(("generate_project", str(model_library_format_path),
                           standalone_crt_dir, str(project_dir), options))

    def build(self, options):
        if options.get("fail"):
            raise RuntimeError("compiler exploded")
        if options.get("bad_result"):
            return 42
        self.calls.append(("build", options))

    def flash(self, options):
        self.calls.append(("flash", options))

    def open_transport(self, options):
        self.open, self.hangup = True, bool(options.get("hangup"))
        self.buf.clear()
        return TransportTimeouts(1.0, 2.0, 3)

    def close_transport(self):
        self.open = False

    def read_transport(self, n, timeout_sec):
        if not self.open:
            raise TransportClosedError()
        end = None if timeout_sec is None else time.monotonic() + timeout_sec
        while not self.buf:
            if self.hangup:
                raise TransportClosedError()
            if end is not None and time.monotonic() >= end:
                raise IoTimeoutError()
            time.sleep(0.005)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def write_transport(self, data, timeout_sec):
        if not self.open:
            raise TransportClosedError()
        self.buf += data


if __name__ == "__main__":
    sys.exit(main(LoopbackHandler))


# ---------------------------------------------------------------------------------------------
import pytest  # noqa: E402

from generator.errors import UsageError  # noqa: E402
from generator.project_api.client import (ConnectionShutdownError, MalformedReplyError,  # noqa
                                          ProjectAPIClient, ProjectTransport, ReplyTimeoutError,
                                          _LineReader, fill_options, launch_server)


class Pipes:
    """A server thread on os.pipe() pairs; ``client`` talks to it, ``raw`` sends raw lines."""

    def __init__(self, handler):
        self.handler = handler
        s_read, c_write = os.pipe()
        c_read, s_write = os.pipe()
        self._srv_files = (os.fdopen(s_read, "rb"), os.fdopen(s_write, "wb", buffering=0))
        self.server = ProjectAPIServer(*self._srv_files, handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client = ProjectAPIClient(os.fdopen(c_read, "rb", buffering=0),
                                       os.fdopen(c_write, "wb", buffering=0), reply_timeout=5.0)

    def raw(self, line: bytes) -> dict:
        self.client._write_file.write(line + b"\n")
        return json.loads(self.client._reader.readline(5.0))

    def close(self):
        self.client.close()
        self.thread.join(5.0)
        assert not self.thread.is_alive(), "server did not stop at EOF"
        for f in self._srv_files:
            f.close()


@pytest.fixture
def pipes():
    p = Pipes(LoopbackHandler())
    yield p
    p.close()


def _req(method, params, id_=7, **extra) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id_,
                       **extra}).encode()


def test_server_info_query(pipes):
    info = pipes.client.server_info_query("0.18.0")
    assert info["platform_name"] == "loopback"
    assert info["is_template"] is True and info["model_library_format_path"] == ""
    assert info["protocol_version"] == 1
    assert [o["name"] for o in info["project_options"]] == ["board", "verbose", "stack", "mode"]
    assert info["project_options"][3]["choices"] == ["a", "b"]


def test_unsupported_tvm_version_is_rebuilt(pipes):
    with pytest.raises(UnsupportedTVMVersionError) as err:
        pipes.client.server_info_query("0.7.0")
    assert "Traceback" in err.value.data["traceback"]


def test_generate_build_flash(pipes):
    pipes.client.generate_project("/x/model.tar", None, "/x/proj", {"board": "b"})
    pipes.client.build({"verbose": True})
    pipes.client.flash({})
    assert pipes.handler.calls == [
        ("generate_project", "/x/model.tar", None, "/x/proj", {"board": "b"}),
        ("build", {"verbose": True}), ("flash", {})]


def test_generic_failure_names_the_method(pipes):
    with pytest.raises(ServerError) as err:
        pipes.client.build({"fail": True})
    assert err.value.code == ErrorCode.SERVER_ERROR and type(err.value) is ServerError
    assert "build" in err.value.message and "compiler exploded" in err.value.message
    assert "RuntimeError" in err.value.data["traceback"]
    pipes.client.flash({})   # still serving


def test_bad_handler_result_is_internal_error(pipes):
    with pytest.raises(JSONRPCError) as err:
        pipes.client.build({"bad_result": True})
    assert err.value.code == ErrorCode.INTERNAL_ERROR


def test_transport_roundtrip_short_reads(pipes):
    t = ProjectTransport(pipes.client, {})
    t.open()
    assert t.timeouts() == TransportTimeouts(1.0, 2.0, 3.0)
    payload = bytes(range(256)) * 3
    t.write(payload, 1.0)
    got = t.read(100, 1.0)
    assert got == payload[:100]
    rest = bytearray()
    while len(rest) < len(payload) - 100:
        rest += t.read(4096, 1.0)     # a short read: returns what is there, not 4096
    assert bytes(rest) == payload[100:]
    t.close()
    t.close()                          # safe twice


def test_read_timeout_and_poll(pipes):
    t = ProjectTransport(pipes.client, {})
    t.open()
    start = time.monotonic()
    with pytest.raises(IoTimeoutError):
        t.read(10, 0.2)
    assert 0.15 < time.monotonic() - start < 3.0
    with pytest.raises(IoTimeoutError):
        t.read(10, 0)
    t.write(b"x", None)
    assert t.read(10, None) == b"x"
    t.close()


def test_eof_and_closed_transport(pipes):
    t = ProjectTransport(pipes.client, {"hangup": True})
    t.open()
    t.write(b"ab", 1.0)
    assert t.read(2, 1.0) == b"ab"
    with pytest.raises(TransportClosedError):
        t.read(2, 1.0)
    t.close()
    with pytest.raises(TransportClosedError):
        t.read(1, 0.1)
    with pytest.raises(TransportClosedError):
        t.write(b"z", 0.1)
    pipes.client.close_transport()
    pipes.client.close_transport()


@pytest.mark.parametrize("line", [b"not json", b"\xff\xfe{}", b'{"jsonrpc": "2.0", "method"'])
def test_parse_error(pipes, line):
    reply = pipes.raw(line)
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    assert pipes.client.server_info_query()["protocol_version"] == 1   # still serving


@pytest.mark.parametrize("request_", [
    b"[1, 2]",
    b'"hello"',
    _req("server-info", {"tvm_version": "0.18"}),
    _req("server_info_query", [], ),
    _req("server_info_query", None),
    _req("server_info_query", {"tvm_version": "x"}, id_=True),
    _req("server_info_query", {"tvm_version": "x"}, id_=[1]),
    json.dumps({"jsonrpc": "2.0", "method": "server_info_query", "params": {}}).encode(),
    json.dumps({"jsonrpc": "1.0", "method": "build", "params": {}, "id": 1}).encode(),
])
def test_invalid_request(pipes, request_):
    reply = pipes.raw(request_)
    assert reply["error"]["code"] == -32600, reply
    assert pipes.client.server_info_query()["protocol_version"] == 1


def test_method_not_found(pipes):
    reply = pipes.raw(_req("reboot", {}, id_="abc"))
    assert reply == {"jsonrpc": "2.0", "id": "abc", "error": reply["error"]}
    assert reply["error"]["code"] == -32601 and "reboot" in reply["error"]["message"]
    # private and inherited names are not methods either
    assert pipes.raw(_req("__init__", {}))["error"]["code"] == -32601
    assert pipes.raw(_req("_dispatch", {}))["error"]["code"] == -32601


@pytest.mark.parametrize("method,params,word", [
    ("server_info_query", {}, "missing"),
    ("server_info_query", {"tvm_version": "0.18", "x": 1}, "extra"),
    ("server_info_query", {"tvm_version": 18}, "want str"),
    ("build", {}, "missing"),
    ("build", {"options": []}, "want object"),
    ("read_transport", {"n": "3", "timeout_sec": 1.0}, "want int"),
    ("read_transport", {"n": True, "timeout_sec": 1.0}, "want int"),
    ("read_transport", {"n": 0, "timeout_sec": 1.0}, "n must be"),
    ("read_transport", {"n": 3}, "missing"),
    ("read_transport", {"n": 3, "timeout_sec": "1"}, "number or null"),
    ("read_transport", {"n": 3, "timeout_sec": -1}, "timeout_sec"),
    ("write_transport", {"data": "~~~{", "timeout_sec": None}, "base85"),
    ("write_transport", {"data": b"".hex(), "timeout_sec": None, "n": 1}, "extra"),
    ("generate_project", {"model_library_format_path": "m", "standalone_crt_dir": 3,
                          "project_dir": "p", "options": {}}, "standalone_crt_dir"),
    ("close_transport", {"now": True}, "extra"),
])
def test_invalid_params(pipes, method, params, word):
    reply = pipes.raw(_req(method, params, id_=11))
    assert reply["id"] == 11
    assert reply["error"]["code"] == -32602, reply
    assert word in reply["error"]["message"]


def test_int_accepted_as_float_timeout(pipes):
    reply = pipes.raw(_req("open_transport", {"options": {}}))
    assert reply["result"]["timeouts"]["session_established_timeout_sec"] == 3.0
    reply = pipes.raw(_req("read_transport", {"n": 1, "timeout_sec": 0}))
    assert reply["error"]["message"] == "IoTimeoutError"


# --- client-side checks ------------------------------------------------------------------------

def test_fill_options():
    opts = fill_options(list(OPTIONS), {"board": "x", "mode": "b"})
    assert opts == {"board": "x", "verbose": False, "stack": 2048, "mode": "b"}
    with pytest.raises(UsageError, match="unknown project option"):
        fill_options(list(OPTIONS), {"bored": "x"})
    # tvmc-style strings convert to the declared type; ones that do not convert are refused
    assert fill_options(list(OPTIONS), {"stack": "4096", "verbose": "true"})["stack"] == 4096
    assert fill_options(list(OPTIONS), {"verbose": "False"})["verbose"] is False
    with pytest.raises(UsageError, match="'big' is not an int"):
        fill_options(list(OPTIONS), {"stack": "big"})
    with pytest.raises(UsageError, match="'maybe' is not a bool"):
        fill_options(list(OPTIONS), {"verbose": "maybe"})
    with pytest.raises(UsageError, match="want int"):
        fill_options(list(OPTIONS), {"stack": True})
    with pytest.raises(UsageError, match="not one of"):
        fill_options(list(OPTIONS), {"mode": "c"})


def test_option_json_roundtrip():
    for o in OPTIONS:
        assert ProjectOption.from_json(json.loads(json.dumps(o.to_json()))) == o
    with pytest.raises(ValueError):
        ProjectOption("x", "float", help="", optional=("build",))
    with pytest.raises(ValueError):
        ProjectOption("x", "int", help="", optional=("compile",))


class _FakeServerPipes:
    """A 'server' that answers whatever the test says, to test the client's reply checks."""

    def __init__(self):
        s_read, c_write = os.pipe()
        c_read, s_write = os.pipe()
        self.s_read, self.s_write = s_read, s_write
        self.client = ProjectAPIClient(os.fdopen(c_read, "rb", buffering=0),
                                       os.fdopen(c_write, "wb", buffering=0), reply_timeout=2.0)

    def answer(self, reply: bytes):
        os.write(self.s_write, reply)

    def close(self):
        self.client.close()
        for fd in (self.s_read, self.s_write):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.mark.parametrize("reply,exc", [
    (b"garbage\n", MalformedReplyError),
    (b'{"jsonrpc": "2.0", "id": 99, "result": null}\n', MalformedReplyError),
    (b'{"jsonrpc": "1.0", "id": 1, "result": null}\n', MalformedReplyError),
    (b'{"jsonrpc": "2.0", "id": 1}\n', MalformedReplyError),
    (b'{"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": ""}}\n',
     MalformedReplyError),
    (b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "TransportClosedError",'
     b' "data": null}}\n', TransportClosedError),
])
def test_client_rejects_bad_replies(reply, exc):
    fake = _FakeServerPipes()
    try:
        fake.answer(reply)
        with pytest.raises(exc):
            fake.client.build({})
    finally:
        fake.close()


def test_client_reply_timeout_and_eof():
    fake = _FakeServerPipes()
    try:
        with pytest.raises(ReplyTimeoutError):
            fake.client.call("build", {"options": {}}, timeout=0.2)
        os.close(fake.s_write)
        with pytest.raises(ConnectionShutdownError):
            fake.client.build({})
        with pytest.raises(ConnectionShutdownError):   # closed for good
            fake.client.build({})
    finally:
        fake.close()


def test_line_reader_keeps_extra_lines():
    r, w = os.pipe()
    os.write(w, b'{"a": 1}\n{"b": 2}\n{"c"')
    reader = _LineReader(os.fdopen(r, "rb", buffering=0))
    assert reader.readline(1.0) == b'{"a": 1}\n'
    assert reader.readline(1.0) == b'{"b": 2}\n'
    os.write(w, b": 3}\n")
    assert reader.readline(1.0) == b'{"c": 3}\n'
    os.close(w)
    assert reader.readline(1.0) == b""


# --- a real subprocess -------------------------------------------------------------------------

@pytest.fixture
def loopback_dir(tmp_path):
    d = tmp_path / "loopback"
    d.mkdir()
    shutil.copy(__file__, d / "microtvm_api_server.py")
    return d


@pytest.mark.timeout(60)
def test_subprocess_server(loopback_dir):
    client = launch_server(loopback_dir, reply_timeout=10.0)
    try:
        assert client.server_info_query()["platform_name"] == "loopback"
        t = ProjectTransport(client, {})
        t.open()
        t.write(b"hello world", 1.0)
        assert t.read(5, 1.0) == b"hello"
        assert t.read(100, 1.0) == b" world"
        with pytest.raises(IoTimeoutError):
            t.read(1, 0.1)
        t.close()
        t.close()
        with pytest.raises(TransportClosedError):
            t.read(1, 0.1)
        with pytest.raises(JSONRPCError) as err:
            client.call("nope", {})
        assert err.value.code == -32601
    finally:
        client.close()
    assert client.process.returncode == 0     # exited by itself at EOF
    client.close()                            # safe twice


@pytest.mark.timeout(60)
def test_launch_script_is_used(loopback_dir):
    marker = loopback_dir / "launched"
    script = loopback_dir / "launch_microtvm_api_server.sh"
    script.write_text(f'#!/bin/sh\necho "$1" > {marker}\nexec "{sys.executable}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    client = launch_server(loopback_dir, reply_timeout=10.0)
    try:
        assert client.server_info_query()["protocol_version"] == 1
    finally:
        client.close()
    assert marker.read_text().strip() == str(loopback_dir / "microtvm_api_server.py")


@pytest.mark.timeout(60)
def test_server_exit_is_reported(loopback_dir):
    client = launch_server(loopback_dir, reply_timeout=10.0)
    client.process.kill()
    client.process.wait(10)
    with pytest.raises(ConnectionShutdownError, match="exit status"):
        client.server_info_query()
    assert client.is_shutdown
