"""The server side of the microTVM Project API (docs/PROJECT_API.md).

A project's ``microtvm_api_server.py`` subclasses :class:`ProjectAPIHandler` and calls :func:`main`.
The handler's method signatures are the parameter schema: :class:`ProjectAPIServer` checks every
request against the annotations of the abstract methods (missing, extra and wrongly typed
parameters are −32602) and converts wire values to the annotated Python types (base85 strings to
``bytes``, path strings to ``pathlib.Path``) before calling the handler. Typed errors raised by a
handler (:class:`~generator.project_api.protocol.IoTimeoutError` …) travel as −32000 with their
class name as message and the trace in ``data.traceback``.

The server reads and writes plain binary file objects, so tests can run it over ``os.pipe()``
pairs in a thread. It logs to stderr only: stdout is never written.
"""

from __future__ import annotations

import abc
import argparse
import inspect
import json
import logging
import os
import pathlib
import sys
import types
import typing
from typing import Any, BinaryIO, Callable, Sequence

from generator.project_api.protocol import (PROTOCOL_VERSION, ErrorCode, JSONRPCError, ServerError, ServerInfo,
                       TransportTimeouts, b85decode, b85encode, request_id_of, validate_request)

log = logging.getLogger(__name__)


class ProjectAPIHandler(abc.ABC):
    """What a Project API server implements. The annotations below are the wire schema."""

    @abc.abstractmethod
    def server_info_query(self, tvm_version: str) -> ServerInfo:
        """Describe this server and its options; raise UnsupportedTVMVersionError if need be."""

    @abc.abstractmethod
    def generate_project(self, model_library_format_path: pathlib.Path,
                         standalone_crt_dir: pathlib.Path | None, project_dir: pathlib.Path,
                         options: dict) -> None:
        """Create ``project_dir`` (which must not exist) from the MLF tar and this template."""

    @abc.abstractmethod
    def build(self, options: dict) -> None:
        """Build the project so that flash() can run."""

    @abc.abstractmethod
    def flash(self, options: dict) -> None:
        """Program the device (or prepare the emulator)."""

    @abc.abstractmethod
    def open_transport(self, options: dict) -> TransportTimeouts:
        """Open the byte channel to the device; read/write_transport work until close."""

    @abc.abstractmethod
    def close_transport(self) -> None:
        """Close the byte channel; a no-op when it is not open (safe to call twice)."""

    @abc.abstractmethod
    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        """Return 1..n bytes; IoTimeoutError when none arrive in time, TransportClosedError at EOF.

        ``timeout_sec`` None blocks; 0 polls.
        """

    @abc.abstractmethod
    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        """Write all of ``data`` or raise IoTimeoutError / TransportClosedError."""


#: the methods a client may call (sorted)
METHODS: tuple[str, ...] = tuple(
    name for name, _ in inspect.getmembers(ProjectAPIHandler, inspect.isfunction)
    if getattr(getattr(ProjectAPIHandler, name), "__isabstractmethod__", False))


def method_params(method: str) -> dict[str, Any]:
    """The parameters of a Project API method and their annotated Python types, in order."""
    func = getattr(ProjectAPIHandler, method)
    hints = typing.get_type_hints(func)
    names = [p for p in inspect.signature(func).parameters if p != "self"]
    return {name: hints[name] for name in names}


def _describe(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    return {type(None): "null", bytes: "base85 str", pathlib.Path: "str", float: "number",
            dict: "object"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _convert(annotation: Any, value: Any) -> Any:
    """Convert a wire value to ``annotation``; ``ValueError`` if it does not fit."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for alt in typing.get_args(annotation):
            try:
                return _convert(alt, value)
            except ValueError:
                continue
        raise ValueError
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is bytes:
        if isinstance(value, str):
            return b85decode(value)
    elif annotation is pathlib.Path:
        if isinstance(value, str) and value:
            return pathlib.Path(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, annotation) and not (annotation is not bool and isinstance(value, bool)):
        return value
    raise ValueError


def _to_wire(method: str, result: Any, params: dict[str, Any]) -> Any:
    """The JSON ``result`` of a method from what the handler returned (−32603 if malformed)."""
    def bad(what: str) -> JSONRPCError:
        return JSONRPCError(ErrorCode.INTERNAL_ERROR,
                            f"{method}: the server handler returned {what}")

    if method == "server_info_query":
        if not isinstance(result, ServerInfo):
            raise bad(f"{type(result).__name__}, not ServerInfo")
        return result.to_json()
    if method == "open_transport":
        if not isinstance(result, TransportTimeouts):
            raise bad(f"{type(result).__name__}, not TransportTimeouts")
        return {"timeouts": result.to_json()}
    if method == "read_transport":
        if not isinstance(result, (bytes, bytearray)) or not 1 <= len(result) <= params["n"]:
            raise bad(f"{len(result) if isinstance(result, (bytes, bytearray)) else result!r}"
                      f" bytes, want 1..{params['n']}")
        return {"data": b85encode(bytes(result))}
    if result is not None:
        raise bad(f"{type(result).__name__}, want null")
    return None


class ProjectAPIServer:
    """Serves one handler over a pair of binary file objects, one request at a time."""

    def __init__(self, read_file: BinaryIO, write_file: BinaryIO, handler: ProjectAPIHandler):
        self._read = read_file
        self._write = write_file
        self._handler = handler

    def serve_forever(self) -> None:
        """Serve until the client closes its end (EOF) or the reply channel breaks."""
        while self.serve_one_request():
            pass

    def serve_one_request(self) -> bool:
        """Read, run and answer one request; False when there will be no more."""
        line = self._read.readline()
        if not line:
            log.debug("EOF on the request channel; stopping")
            return False
        log.debug("request <- %r", line)
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return self._reply(None, error=JSONRPCError(
                ErrorCode.PARSE_ERROR, f"parse error: {exc}").to_json())
        request_id = request_id_of(request)
        try:
            validate_request(request)
            result = self._dispatch(request["method"], request["params"])
        except JSONRPCError as exc:
            if isinstance(exc, ServerError):
                exc.set_traceback(exc)
            log.debug("error reply: %s", exc)
            return self._reply(request_id, error=exc.to_json())
        except Exception as exc:  # noqa: BLE001 - any handler failure goes back to the client
            err = ServerError(f"calling method {request['method']}: {type(exc).__name__}: {exc}")
            err.set_traceback(exc)
            log.debug("error reply: %s", err)
            return self._reply(request_id, error=err.to_json())
        return self._reply(request_id, result=result)

    def _dispatch(self, method: str, raw: dict[str, Any]) -> Any:
        if method not in METHODS:
            raise JSONRPCError(ErrorCode.METHOD_NOT_FOUND, f"{method}: no such method",
                               {"methods": list(METHODS)})
        schema = method_params(method)
        missing = [name for name in schema if name not in raw]
        extra = sorted(name for name in raw if name not in schema)
        if missing or extra:
            what = "; ".join(filter(None, [
                f"missing parameter(s) {', '.join(missing)}" if missing else "",
                f"extra parameter(s) {', '.join(extra)}" if extra else ""]))
            raise JSONRPCError(ErrorCode.INVALID_PARAMS, f"method {method}: {what}")
        params: dict[str, Any] = {}
        for name, annotation in schema.items():
            try:
                params[name] = _convert(annotation, raw[name])
            except ValueError:
                raise JSONRPCError(
                    ErrorCode.INVALID_PARAMS,
                    f"method {method}: parameter {name}: want {_describe(annotation)}, got "
                    f"{type(raw[name]).__name__} {raw[name]!r:.60}") from None
        if method == "read_transport" and params["n"] < 1:
            raise JSONRPCError(ErrorCode.INVALID_PARAMS, f"method {method}: n must be >= 1")
        timeout = params.get("timeout_sec")
        if timeout is not None and timeout < 0:
            raise JSONRPCError(ErrorCode.INVALID_PARAMS,
                               f"method {method}: timeout_sec must be >= 0 or null")
        result = getattr(self._handler, method)(**params)
        return _to_wire(method, result, params)

    def _reply(self, request_id: Any, *, result: Any = None, error: Any = None) -> bool:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        if error is not None:
            reply["error"] = error
        else:
            reply["result"] = result
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            text = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": JSONRPCError(
                ErrorCode.INTERNAL_ERROR, f"reply is not JSON: {exc}").to_json()})
        log.debug("reply -> %s", text)
        try:
            self._write.write(text.encode("utf-8") + b"\n")
            self._write.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            log.error("cannot write the reply (%s); stopping", exc)
            return False
        return True


def make_arg_parser() -> argparse.ArgumentParser:
    """The command line every Project API server takes."""
    parser = argparse.ArgumentParser(description="microTVM Project API server (pemesh)")
    parser.add_argument("--read-fd", type=int, required=True,
                        help="file descriptor to read requests from")
    parser.add_argument("--write-fd", type=int, required=True,
                        help="file descriptor to write replies to")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level (to stderr)")
    return parser


def main(handler: ProjectAPIHandler | Callable[[], ProjectAPIHandler],
         argv: Sequence[str] | None = None) -> int:
    """Run a server on the descriptors named by ``--read-fd``/``--write-fd``; return 0 at EOF.

    ``handler`` may be an instance or a factory (called after argument parsing). The transport is
    closed when the client goes away, so an emulator never outlives its server.
    """
    args = make_arg_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not isinstance(handler, ProjectAPIHandler):
        handler = handler()
    with os.fdopen(args.read_fd, "rb") as rfile, \
            os.fdopen(args.write_fd, "wb", buffering=0) as wfile:
        try:
            ProjectAPIServer(rfile, wfile, handler).serve_forever()
        finally:
            try:
                handler.close_transport()
            except Exception:  # noqa: BLE001 - shutting down anyway
                log.exception("close_transport at shutdown failed")
    return 0
