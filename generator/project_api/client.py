"""The client side of the microTVM Project API: launch a server, call it, drive a project.

:class:`ProjectAPIClient` speaks the protocol over any pair of binary file objects.
:func:`launch_server` starts a project's ``microtvm_api_server.py`` (or its
``launch_microtvm_api_server.sh``) as a subprocess with cwd = the project directory, the way TVM
≤0.18 did. :class:`TemplateProject` and :class:`GeneratedProject` are the old ``tvm.micro``
glue: generate a project from an MLF tar, then build, flash and open a :class:`ProjectTransport`.
Options are checked against the server's declarations: unknown names are refused, every
unspecified option is filled with its default.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pathlib
import select
import shlex
import subprocess
import sys
import time
from typing import Any, BinaryIO, Mapping

from generator.errors import RunError, UsageError
from generator.project_api.protocol import (JSONRPCError, ProjectOption, TransportTimeouts, b85decode, b85encode,
                       check_option_value, coerce_option_value, validate_reply)

log = logging.getLogger(__name__)

SERVER_PYTHON_FILENAME = "microtvm_api_server.py"
SERVER_LAUNCH_SCRIPT_FILENAME = "launch_microtvm_api_server.sh"

#: the TVM version a pemesh client reports in server_info_query (the last with microTVM)
CLIENT_TVM_VERSION = "0.18.0"


class ProjectAPIClientError(RunError):
    """The client could not talk to the server (not a server-side error)."""


class ConnectionShutdownError(ProjectAPIClientError):
    """The server went away (EOF on the reply channel) or the client was closed."""


class MalformedReplyError(ProjectAPIClientError):
    """The server sent something that is not a valid reply to the request."""


class ReplyTimeoutError(ProjectAPIClientError):
    """The server did not answer within the client's reply timeout."""


class ServerNotFoundError(ProjectAPIClientError):
    """The directory holds no Project API server."""


class TemplateProjectError(ProjectAPIClientError):
    """A generated project was expected, but the server says it is a template."""


class NotATemplateProjectError(ProjectAPIClientError):
    """A template was expected, but the server says it is a generated project."""


class _LineReader:
    """Reads ``\\n``-terminated lines from a binary file, with an optional timeout."""

    def __init__(self, file: BinaryIO):
        self._file = file
        try:
            self._fd: int | None = file.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._buf = bytearray()

    def readline(self, timeout: float | None) -> bytes:
        if self._fd is None:
            return self._file.readline()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                raise ReplyTimeoutError(f"no reply from the Project API server in {timeout} s",
                                        hint="the server may be stuck; rerun with debug=True")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                line, self._buf = bytes(self._buf), bytearray()
                return line
            self._buf += chunk
        idx = self._buf.index(b"\n") + 1
        line, self._buf = bytes(self._buf[:idx]), self._buf[idx:]
        return line


class ProjectAPIClient:
    """Calls a Project API server over a pair of binary files (one request at a time).

    ``reply_timeout`` (seconds, None = wait forever) bounds the wait for every reply.
    ``process`` is the server subprocess, if this client started one; :meth:`close` reaps it.
    """

    def __init__(self, read_file: BinaryIO, write_file: BinaryIO, *,
                 reply_timeout: float | None = None,
                 process: subprocess.Popen | None = None):
        self._read_file = read_file
        self._reader = _LineReader(read_file)
        self._write_file = write_file
        self._ids = itertools.count(1)
        self._closed = False
        self.reply_timeout = reply_timeout
        self.process = process

    @property
    def is_shutdown(self) -> bool:
        return self._closed

    def close(self, wait_sec: float = 10.0) -> None:
        """Close the pipes (the server sees EOF and exits); reap the server. Safe twice."""
        if self._closed:
            return
        self._closed = True
        for f in (self._write_file, self._read_file):
            try:
                f.close()
            except OSError:
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=wait_sec)
            except subprocess.TimeoutExpired:
                log.warning("Project API server %d did not exit; killing it", self.process.pid)
                self.process.kill()
                self.process.wait(timeout=wait_sec)

    shutdown = close  # the old client's name

    def __enter__(self) -> "ProjectAPIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send one request and return its ``result``; server errors are raised as typed errors."""
        if self._closed:
            raise ConnectionShutdownError("the Project API connection is closed",
                                          hint="open the project again")
        request_id = next(self._ids)
        line = json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                           "id": request_id})
        log.debug("request -> %s", line)
        try:
            self._write_file.write(line.encode("utf-8") + b"\n")
            self._write_file.flush()
        except (BrokenPipeError, OSError) as exc:
            self._server_gone(f"writing the {method} request failed: {exc}")
        reply_line = self._reader.readline(self.reply_timeout if timeout is None else timeout)
        log.debug("reply <- %r", reply_line[:500])
        if not reply_line:
            self._server_gone(f"EOF while waiting for the {method} reply")
        try:
            reply = json.loads(reply_line.decode("utf-8"))
            validate_reply(reply, request_id)
        except ValueError as exc:
            raise MalformedReplyError(f"bad reply to {method}: {exc}",
                                      hint="is the server speaking Project API protocol 1?") \
                from None
        if "error" in reply:
            raise JSONRPCError.from_json(reply["error"], f"calling method {method}")
        return reply["result"]

    def _server_gone(self, what: str) -> None:
        code = self.process.poll() if self.process is not None else None
        self.close(wait_sec=2.0)
        status = f" (server exit status {code})" if code is not None else ""
        raise ConnectionShutdownError(f"Project API server went away: {what}{status}",
                                      hint="see the server's messages on stderr; "
                                           "launch it with debug=True for more")

    # --- the protocol's methods -------------------------------------------------------------
    def server_info_query(self, tvm_version: str = CLIENT_TVM_VERSION) -> dict[str, Any]:
        return self.call("server_info_query", {"tvm_version": tvm_version})

    def generate_project(self, model_library_format_path: str, standalone_crt_dir: str | None,
                         project_dir: str, options: Mapping[str, Any] | None = None) -> None:
        self.call("generate_project", {
            "model_library_format_path": str(model_library_format_path),
            "standalone_crt_dir": None if standalone_crt_dir is None else str(standalone_crt_dir),
            "project_dir": str(project_dir), "options": dict(options or {})})

    def build(self, options: Mapping[str, Any] | None = None) -> None:
        self.call("build", {"options": dict(options or {})})

    def flash(self, options: Mapping[str, Any] | None = None) -> None:
        self.call("flash", {"options": dict(options or {})})

    def open_transport(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.call("open_transport", {"options": dict(options or {})})

    def close_transport(self) -> None:
        self.call("close_transport", {})

    def read_transport(self, n: int, timeout_sec: float | None) -> dict[str, Any]:
        reply = self.call("read_transport", {"n": n, "timeout_sec": timeout_sec},
                          timeout=None if timeout_sec is None or self.reply_timeout is None
                          else timeout_sec + self.reply_timeout)
        return {"data": b85decode(reply["data"])}

    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        self.call("write_transport", {"data": b85encode(data), "timeout_sec": timeout_sec},
                  timeout=None if timeout_sec is None or self.reply_timeout is None
                  else timeout_sec + self.reply_timeout)


def server_command(project_dir: pathlib.Path) -> list[str]:
    """The command line (without the fd options) that starts the server of ``project_dir``."""
    script = project_dir / SERVER_PYTHON_FILENAME
    launcher = project_dir / SERVER_LAUNCH_SCRIPT_FILENAME
    if not script.is_file():
        raise ServerNotFoundError(
            f"no Project API server in {project_dir}: {SERVER_PYTHON_FILENAME} is missing",
            hint="pass a template project (pemesh's templates/project_api) or a generated project")
    if launcher.is_file():
        # a wheel may drop the executable bit: run the script through sh then
        shell = [] if os.access(launcher, os.X_OK) else ["/bin/sh"]
        return [*shell, str(launcher), str(script)]
    return [sys.executable, str(script)]


def launch_server(project_dir: str | os.PathLike, *, debug: bool = False,
                  reply_timeout: float | None = None) -> ProjectAPIClient:
    """Start the server of ``project_dir`` (cwd = that directory) and return a client to it."""
    project_dir = pathlib.Path(project_dir).resolve()
    server_read, client_write = os.pipe()
    client_read, server_write = os.pipe()
    args = server_command(project_dir) + ["--read-fd", str(server_read),
                                          "--write-fd", str(server_write)]
    if debug:
        args.append("--debug")
    env = dict(os.environ)
    # the template imports pemesh's protocol package: make it importable even without install
    pkg_root = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    # a launch_microtvm_api_server.sh runs the server with this Python unless told otherwise
    env.setdefault("PEMESH_PYTHON", sys.executable)
    log.debug("launching Project API server: %s", shlex.join(args))
    try:
        proc = subprocess.Popen(args, cwd=project_dir, pass_fds=(server_read, server_write),
                                env=env, stdin=subprocess.DEVNULL)
    except OSError as exc:
        for fd in (server_read, server_write, client_read, client_write):
            os.close(fd)
        raise ServerNotFoundError(f"cannot start {args[0]}: {exc}",
                                  hint="check that the server script is executable") from None
    os.close(server_read)
    os.close(server_write)
    return ProjectAPIClient(os.fdopen(client_read, "rb", buffering=0),
                            os.fdopen(client_write, "wb", buffering=0),
                            reply_timeout=reply_timeout, process=proc)


def fill_options(declared: list[ProjectOption], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared option: the given value (type-checked) or the default. Unknown names fail."""
    by_name = {o.name: o for o in declared}
    given = dict(given or {})
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise UsageError(f"unknown project option(s): {', '.join(unknown)}",
                         hint=f"the server offers: {', '.join(sorted(by_name))}")
    out: dict[str, Any] = {}
    for name, option in by_name.items():
        value = given.get(name, option.default)
        if value is not None:
            try:
                value = coerce_option_value(option, value)
                check_option_value(option, value)
            except ValueError as exc:
                raise UsageError(str(exc), hint=f"{name}: {option.help}") from None
        out[name] = value
    return out


class ProjectTransport:
    """The device byte channel through the server (open/close/read/write, like old microTVM)."""

    def __init__(self, client: ProjectAPIClient, options: Mapping[str, Any]):
        self._client = client
        self._options = dict(options)
        self._timeouts: TransportTimeouts | None = None

    def timeouts(self) -> TransportTimeouts:
        if self._timeouts is None:
            raise RunError("the transport is not open", hint="call open() first")
        return self._timeouts

    @property
    def is_open(self) -> bool:
        return self._timeouts is not None

    def open(self) -> None:
        reply = self._client.open_transport(self._options)
        self._timeouts = TransportTimeouts(**reply["timeouts"])

    def close(self) -> None:
        """Close the device channel; safe twice and after the server went away."""
        self._timeouts = None
        if not self._client.is_shutdown:
            self._client.close_transport()

    def read(self, n: int, timeout_sec: float | None) -> bytes:
        """1..n bytes; IoTimeoutError / TransportClosedError as raised by the server."""
        return self._client.read_transport(n, timeout_sec)["data"]

    def write(self, data: bytes, timeout_sec: float | None) -> None:
        self._client.write_transport(data, timeout_sec)

    def __enter__(self) -> "ProjectTransport":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Project:
    """Shared part of template and generated projects: the client and the declared options."""

    _want_template: bool

    def __init__(self, client: ProjectAPIClient, options: Mapping[str, Any] | None = None):
        self._client = client
        try:
            self.info = client.server_info_query()
            if self.info.get("protocol_version") != 1:
                raise MalformedReplyError(
                    f"server speaks protocol {self.info.get('protocol_version')!r}, want 1")
            if bool(self.info["is_template"]) != self._want_template:
                cls = NotATemplateProjectError if self._want_template else TemplateProjectError
                raise cls(f"{self.info['platform_name']} server says is_template="
                          f"{self.info['is_template']}",
                          hint="pass a template directory to TemplateProject and a generated "
                               "project to GeneratedProject")
            self.project_options = [ProjectOption.from_json(o)
                                    for o in self.info["project_options"]]
            self.options = fill_options(self.project_options, options)
        except BaseException:
            client.close()
            raise

    @property
    def client(self) -> ProjectAPIClient:
        return self._client

    def close(self) -> None:
        """Stop the server process. Safe twice."""
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GeneratedProject(_Project):
    """A generated project, driven through its own server."""

    _want_template = False

    @classmethod
    def from_directory(cls, project_dir: str | os.PathLike,
                       options: Mapping[str, Any] | None = None, *,
                       debug: bool = False) -> "GeneratedProject":
        return cls(launch_server(project_dir, debug=debug), options)

    @property
    def model_library_format_path(self) -> str:
        return self.info["model_library_format_path"]

    def build(self) -> None:
        self._client.build(self.options)

    def flash(self) -> None:
        self._client.flash(self.options)

    def transport(self) -> ProjectTransport:
        return ProjectTransport(self._client, self.options)


class TemplateProject(_Project):
    """A template project: only generate_project is meaningful."""

    _want_template = True

    @classmethod
    def from_directory(cls, template_dir: str | os.PathLike,
                       options: Mapping[str, Any] | None = None, *,
                       debug: bool = False) -> "TemplateProject":
        return cls(launch_server(template_dir, debug=debug), options)

    def generate_project(self, mlf_path: str | os.PathLike, project_dir: str | os.PathLike,
                         options: Mapping[str, Any] | None = None, *,
                         debug: bool = False) -> GeneratedProject:
        """Generate ``project_dir`` from the MLF tar and open it as a :class:`GeneratedProject`."""
        opts = fill_options(self.project_options, {**self.options, **dict(options or {})})
        project_dir = pathlib.Path(project_dir).resolve()
        self._client.generate_project(str(pathlib.Path(mlf_path).resolve()), None,
                                      str(project_dir), opts)
        return GeneratedProject.from_directory(project_dir, opts, debug=debug)
