"""The microTVM Project API wire protocol, shared by server and client (docs/PROJECT_API.md).

JSON-RPC 2.0, one UTF-8 JSON object per ``\\n``-terminated line, one request at a time. This module
holds what both sides must agree on: error codes and the error classes that survive the wire,
the shape of a project option, the reply records, request/reply validation and the base85 codec
used for transport bytes. It imports nothing from the rest of pemesh, so a server script can use it
with only the standard library.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import traceback
from dataclasses import dataclass
from typing import Any, Sequence

#: the server adds this to the server_info_query result
PROTOCOL_VERSION = 1

#: a method name on the wire
METHOD_RE = re.compile(r"^[a-zA-Z0-9_]+$")

#: the methods an option may name in ``required`` / ``optional``
OPTION_METHODS = ("generate_project", "build", "flash", "open_transport")

#: option types on the wire and the Python types their values must have
OPTION_TYPES: dict[str, type] = {"bool": bool, "str": str, "int": int}


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes, plus the custom server-error code."""

    SERVER_ERROR = -32000
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603


class JSONRPCError(Exception):
    """An error that travels as a JSON-RPC ``error`` object: ``{code, message, data}``."""

    def __init__(self, code: int, message: str, data: Any = None, client_context: str | None = None):
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data
        self.client_context = client_context

    def to_json(self) -> dict[str, Any]:
        """The ``error`` member of a reply."""
        return {"code": self.code, "message": self.message, "data": self.data}

    def __str__(self) -> str:
        where = f"{self.client_context}: " if self.client_context else ""
        text = f"{where}JSON-RPC error {self.code}: {self.message}"
        if isinstance(self.data, dict) and self.data.get("detail"):
            text += f" ({self.data['detail']})"
        if isinstance(self.data, dict) and self.data.get("traceback"):
            text += "\nserver traceback:\n" + str(self.data["traceback"]).rstrip()
        elif self.data:
            text += f"\n{self.data!r}"
        return text

    @classmethod
    def from_json(cls, error: dict[str, Any], client_context: str | None = None) -> "JSONRPCError":
        """Rebuild an error from a reply; typed server errors come back as their own class."""
        if error.get("code") == ErrorCode.SERVER_ERROR:
            return ServerError.from_json(error, client_context)
        return cls(error["code"], error["message"], error.get("data"), client_context)


class ServerError(JSONRPCError):
    """A failure while serving a valid request (code −32000).

    Subclasses are the typed errors: their ``message`` on the wire is the class name, which is how
    the client rebuilds them.
    """

    def __init__(self, message: str | None = None, data: Any = None,
                 client_context: str | None = None):
        if type(self) is not ServerError:
            message = type(self).__name__ if message is None else message
        elif message is None:
            raise ValueError("a plain ServerError needs a message")
        super().__init__(ErrorCode.SERVER_ERROR, message, data, client_context)

    def to_json(self) -> dict[str, Any]:
        # typed errors always carry their class name, whatever text they were raised with
        out = super().to_json()
        if type(self) is not ServerError:
            out["message"] = type(self).__name__
            if self.args and self.args[0] != type(self).__name__:
                out["data"] = dict(out["data"] or {}, detail=str(self.args[0]))
        return out

    def set_traceback(self, exc: BaseException) -> None:
        """Put the formatted trace of ``exc`` into ``data.traceback`` (kept if already there)."""
        data = dict(self.data) if isinstance(self.data, dict) else {}
        data.setdefault("traceback", "".join(traceback.format_exception(exc)))
        self.data = data

    @classmethod
    def typed_classes(cls) -> dict[str, type["ServerError"]]:
        """The typed error classes by wire name."""
        return {sub.__name__: sub for sub in cls.__subclasses__()}

    @classmethod
    def from_json(cls, error: dict[str, Any], client_context: str | None = None) -> "ServerError":
        sub = cls.typed_classes().get(error.get("message", ""))
        if sub is not None:
            return sub(data=error.get("data"), client_context=client_context)
        return ServerError(error["message"], error.get("data"), client_context)


class TransportClosedError(ServerError):
    """The transport can no longer move data (EOF, closed, cable removed, emulator gone)."""


class IoTimeoutError(ServerError):
    """Nothing could be read (or not all could be written) before the timeout."""


class UnsupportedTVMVersionError(ServerError):
    """server_info_query was called by a TVM version this server does not support."""


@dataclass(frozen=True)
class ProjectOption:
    """One project option as declared by a server (see PROJECT_API.md, "Project options")."""

    name: str
    type: str                                   # "bool" | "str" | "int"
    help: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    required: tuple[str, ...] | None = None     # methods that need a non-null value
    optional: tuple[str, ...] | None = None     # methods that read it when given

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name}: type {self.type!r} is not one of "
                             f"{sorted(OPTION_TYPES)}")
        for methods in (self.required, self.optional):
            for method in methods or ():
                if method not in OPTION_METHODS:
                    raise ValueError(f"option {self.name}: unknown method {method!r}")
        if not self.required and not self.optional:
            raise ValueError(f"option {self.name}: name at least one method in required/optional")
        if self.default is not None:
            check_option_value(self, self.default)

    def methods(self) -> tuple[str, ...]:
        """Every method that reads this option."""
        return tuple(self.required or ()) + tuple(self.optional or ())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "default": self.default,
            "choices": list(self.choices) if self.choices is not None else None,
            "required": list(self.required) if self.required is not None else None,
            "optional": list(self.optional) if self.optional is not None else None,
            "help": self.help,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ProjectOption":
        def tup(v: Sequence[Any] | None) -> tuple[Any, ...] | None:
            return tuple(v) if v is not None else None
        return cls(name=d["name"], type=d["type"], help=d.get("help", ""), default=d.get("default"),
                   choices=tup(d.get("choices")), required=tup(d.get("required")),
                   optional=tup(d.get("optional")))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def coerce_option_value(option: ProjectOption, value: Any) -> Any:
    """``value`` in the option's declared type: tvmc and the microTVM API pass every value as a
    string (``"verbose": "true"``, ``"config_main_stack_size": "4096"``), so a str converts to a
    bool (true/false/yes/no/on/off/1/0, any case) or an int (decimal, 0x…); other values are
    returned unchanged (:func:`check_option_value` judges them). ValueError when a string does
    not convert, naming the option and what it takes."""
    if not isinstance(value, str) or option.type == "str":
        return value
    text = value.strip()
    if option.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"option {option.name}: {value!r} is not a bool (use true or false)")
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"option {option.name}: {value!r} is not an int") from None


def check_option_value(option: ProjectOption, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` (not None) fits the option's type and choices."""
    want = OPTION_TYPES[option.type]
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if not ok:
        raise ValueError(f"option {option.name}: want {option.type}, got "
                         f"{type(value).__name__} {value!r}")
    if option.choices is not None and value not in option.choices:
        raise ValueError(f"option {option.name}: {value!r} is not one of {list(option.choices)}")


@dataclass(frozen=True)
class ServerInfo:
    """The server_info_query result (before the server adds ``protocol_version``)."""

    platform_name: str
    is_template: bool
    model_library_format_path: str      # "" in a template
    project_options: tuple[ProjectOption, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "platform_name": self.platform_name,
            "is_template": bool(self.is_template),
            "model_library_format_path": str(self.model_library_format_path or ""),
            "project_options": [o.to_json() for o in self.project_options],
            "protocol_version": PROTOCOL_VERSION,
        }


@dataclass(frozen=True)
class TransportTimeouts:
    """Timeouts the old C++ MicroSession used; reported by open_transport."""

    session_start_retry_timeout_sec: float
    session_start_timeout_sec: float
    session_established_timeout_sec: float

    def to_json(self) -> dict[str, float]:
        return {
            "session_start_retry_timeout_sec": float(self.session_start_retry_timeout_sec),
            "session_start_timeout_sec": float(self.session_start_timeout_sec),
            "session_established_timeout_sec": float(self.session_established_timeout_sec),
        }


def b85encode(data: bytes) -> str:
    """Transport bytes → the wire string (Python's ``base64.b85encode``)."""
    return base64.b85encode(bytes(data)).decode("ascii")


def b85decode(text: str) -> bytes:
    """The wire string → transport bytes; ``ValueError`` when it is not base85."""
    try:
        return base64.b85decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"not a base85 string: {exc}") from None


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool))


def request_id_of(request: Any) -> Any:
    """The id to answer a (possibly invalid) request with: its own if well-formed, else null."""
    if isinstance(request, dict) and _valid_id(request.get("id")):
        return request.get("id")
    return None


def validate_request(request: Any) -> None:
    """Raise ``JSONRPCError(INVALID_REQUEST)`` unless ``request`` is a well-formed request."""
    def bad(what: str) -> JSONRPCError:
        return JSONRPCError(ErrorCode.INVALID_REQUEST, f"invalid request: {what}")

    if not isinstance(request, dict):
        raise bad(f"want an object, got {type(request).__name__}")
    if request.get("jsonrpc") != "2.0":
        raise bad(f'"jsonrpc" must be "2.0", got {request.get("jsonrpc")!r}')
    method = request.get("method")
    if not isinstance(method, str) or not METHOD_RE.match(method):
        raise bad(f'"method" must be a string matching {METHOD_RE.pattern}, got {method!r}')
    if not isinstance(request.get("params"), dict):
        raise bad(f'"params" must be an object, got {type(request.get("params")).__name__}')
    if "id" not in request or not _valid_id(request["id"]):
        raise bad(f'"id" must be a string, an integer or null, got {request.get("id")!r}')


def validate_reply(reply: Any, request_id: Any) -> None:
    """Raise ``ValueError`` unless ``reply`` is a well-formed reply to ``request_id``."""
    if not isinstance(reply, dict):
        raise ValueError(f"reply is not an object: {reply!r}")
    if reply.get("jsonrpc") != "2.0":
        raise ValueError(f'reply "jsonrpc" must be "2.0", got {reply.get("jsonrpc")!r}')
    if ("result" in reply) == ("error" in reply):
        raise ValueError(f"reply needs exactly one of result/error: {reply!r}")
    if "error" in reply:
        err = reply["error"]
        if not (isinstance(err, dict) and isinstance(err.get("code"), int)
                and isinstance(err.get("message"), str)):
            raise ValueError(f"reply error must be {{code: int, message: str, data}}: {err!r}")
        if reply.get("id") not in (request_id, None):
            raise ValueError(f"reply id {reply.get('id')!r} != request id {request_id!r}")
    elif reply.get("id") != request_id:
        raise ValueError(f"reply id {reply.get('id')!r} != request id {request_id!r}")
