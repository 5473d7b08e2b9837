"""The microTVM Project API, both sides (docs/PROJECT_API.md in the shared docs).

- :mod:`.protocol` — wire format: error codes and typed errors, project options, validation.
- :mod:`.server` — :class:`ProjectAPIHandler` (its signatures are the schema), the server, ``main``.
- :mod:`.client` — launch a server, call it; ``TemplateProject`` / ``GeneratedProject``.
- :mod:`.inference` — ``run_inference`` over a project transport with the host-link framing.
- :mod:`.commands` — ``pemesh micro …``.

The template project is ``templates/project_api/microtvm_api_server.py``.
"""

from generator.project_api.protocol import (PROTOCOL_VERSION, ErrorCode, IoTimeoutError, JSONRPCError, ProjectOption,
                       ServerError, ServerInfo, TransportClosedError, TransportTimeouts,
                       UnsupportedTVMVersionError)

__all__ = [
    "PROTOCOL_VERSION", "ErrorCode", "IoTimeoutError", "JSONRPCError", "ProjectOption",
    "ServerError", "ServerInfo", "TransportClosedError", "TransportTimeouts",
    "UnsupportedTVMVersionError",
]
