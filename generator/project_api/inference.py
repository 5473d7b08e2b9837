"""Inference over a Project API transport, using the host-link framing (CONTRACTS §1).

:class:`TransportPort` gives a :class:`~generator.project_api.client.ProjectTransport` the small
pyserial-like face (``read(n)``, ``write(data)``, ``timeout``, ``in_waiting``) that
:class:`generator.mesh.hostlink.HostLink` talks to; :func:`run_inference` runs one inference on an open
transport or on a :class:`~generator.project_api.client.GeneratedProject` (opening and closing its
transport around the call).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from generator.project_api.client import GeneratedProject, ProjectTransport
from generator.project_api.protocol import IoTimeoutError

log = logging.getLogger(__name__)

#: bytes asked for per read_transport call (short reads are normal)
READ_CHUNK = 4096


class TransportPort:
    """pyserial-like adapter over a transport: reads are buffered, ``timeout`` as in pyserial.

    ``read(size)`` waits up to ``timeout`` seconds (None = forever, 0 = poll) for the first byte,
    then returns what has arrived, at most ``size`` bytes; a timeout returns ``b""``.
    """

    def __init__(self, transport: ProjectTransport, timeout: float | None = 1.0,
                 write_timeout: float | None = 10.0):
        self.transport = transport
        self.timeout = timeout
        self.write_timeout = write_timeout
        self._buf = bytearray()

    @property
    def in_waiting(self) -> int:
        return len(self._buf)

    def read(self, size: int = 1) -> bytes:
        if size <= 0:
            return b""
        if not self._buf:
            try:
                self._buf += self.transport.read(READ_CHUNK, self.timeout)
            except IoTimeoutError:
                return b""
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def write(self, data: bytes) -> int:
        self.transport.write(bytes(data), self.write_timeout)
        return len(data)

    def flush(self) -> None:
        """Writes are complete when write() returns."""

    def reset_input_buffer(self) -> None:
        self._buf.clear()


def run_inference(target: ProjectTransport | GeneratedProject, inputs: Sequence[np.ndarray], *,
                  timeout: float = 30.0,
                  output_specs: Sequence[Any] | None = None) -> tuple[list[np.ndarray], Any]:
    """One inference on the PE behind ``target``: returns (outputs, the PE's Stats).

    ``target`` is an open :class:`ProjectTransport`, or a generated project whose transport is
    opened for the call and closed after it. ``timeout`` bounds each wait for the PE (seconds);
    ``output_specs`` (TensorSpecs) shapes the outputs; a generated project supplies them from its
    own ``pemesh_app.json``; over a bare transport without them, outputs come back flat bytes.
    """
    from generator.mesh.hostlink import HostLink

    if isinstance(target, GeneratedProject):
        if output_specs is None:
            from pathlib import Path

            from generator.firmware.build import load_app_spec

            app_json = Path(target.model_library_format_path).parent / "pemesh_app.json"
            if app_json.is_file():
                output_specs = load_app_spec(app_json.parent).outputs
        with target.transport() as transport:
            return run_inference(transport, inputs, timeout=timeout, output_specs=output_specs)
    link = HostLink(TransportPort(target), timeout=timeout, output_specs=output_specs)
    outputs, stats = link.infer([np.ascontiguousarray(x) for x in inputs])
    log.info("inference done: %s", stats)
    return outputs, stats
