"""A host for the EEMBC / MLPerf Tiny DUT protocol, written for the tests from mlcommons/tiny's
benchmark/runner (device_under_test.py, serial_device.py): a command is its text plus '%'; the
DUT answers lines ending in "\\n" and its reply ends with the line containing "m-ready";
``load`` sends ``db load N`` then ``db <hex>`` of at most 31 bytes per command (the runner's
``_max_bytes`` without a power manager); ``infer N W``; ``m-results-[...]`` parsed as floats.
It is the runner's protocol, not pemesh code: it must not import generator."""

from __future__ import annotations

import re
import time

import serial

RESULTS_RE = re.compile(r"m-results-\[([^\]]*)\]")
NAME_RE = re.compile(r"^m-(name)-dut-\[([^]]+)]$")
LAP_RE = re.compile(r"^m-lap-us-(\d+)$")


class EembcDut:
    """One DUT on a serial port (a pty of ``pemesh serve`` or a board)."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = 30.0, max_bytes: int = 31):
        self.port = serial.Serial(port, baud, timeout=0.1)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._buf = b""

    def _read(self) -> bytes:
        """What has arrived: waits for one byte (up to the port timeout), then takes the rest
        that is waiting (pyserial's read(n) would wait the whole timeout for n bytes)."""
        data = self.port.read(1)
        if data and self.port.in_waiting:
            data += self.port.read(self.port.in_waiting)
        return data

    def close(self) -> None:
        self.port.close()

    def flush(self, quiet: float = 0.5, timeout: float = 20.0) -> list[str]:
        """The runner's reset_port, retried: drop what is buffered, send a bare terminator (an
        empty command: the DUT answers "m-ready"), read until the line is quiet for ``quiet``
        s; again until an m-ready came. (QEMU's pty drops what the guest writes until it has
        noticed, within about a second, that the host side was opened.)"""
        self.port.reset_input_buffer()
        self._buf = b""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            self.port.write(b"%")
            data, last = b"", time.monotonic()
            while time.monotonic() - last < quiet:
                chunk = self._read()
                if chunk:
                    data, last = data + chunk, time.monotonic()
            lines += [ln.strip("\r\0") for ln in data.decode().split("\n") if ln.strip()]
            if "m-ready" in lines:
                return lines + self._sync(deadline)
        raise TimeoutError(f"the DUT did not answer an empty command within {timeout:g} s: {lines}")

    def _sync(self, deadline: float) -> list[str]:
        """Send ``name`` and read up to the m-ready after its m-name line: replies to earlier
        bare '%' that were still on their way are read and dropped here, not taken for the
        reply of the next command."""
        self.port.write(b"name%")
        lines, named = [], False
        while True:
            line = self._line(deadline)
            lines.append(line)
            named = named or bool(NAME_RE.match(line))
            if named and "m-ready" in line:
                return lines

    def _line(self, deadline: float) -> str:
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete line from the DUT (have {self._buf!r})")
            self._buf += self._read()
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode().strip("\r\0")

    def command(self, text: str, timeout: float | None = None) -> list[str]:
        """Send one command; the lines of its reply up to and including the m-ready line."""
        self.port.write((text + "%").encode())
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            line = self._line(deadline)
            if line:
                lines.append(line)
            if "m-ready" in line:
                return lines

    def name(self) -> str | None:
        for line in self.command("name"):
            m = NAME_RE.match(line)
            if m:
                return m.group(2)
        return None

    def load(self, data: bytes) -> list[str]:
        lines = self.command(f"db load {len(data)}")
        for i in range(0, len(data), self.max_bytes):
            lines = self.command("db " + data[i:i + self.max_bytes].hex())
        return lines

    def infer(self, number: int, warmups: int) -> list[str]:
        return self.command(f"infer {number} {warmups}")


def parse_results(lines: list[str]) -> list[float]:
    """The values of the m-results-[...] line of a reply."""
    for line in lines:
        m = RESULTS_RE.search(line)
        if m:
            return [float(v) for v in m.group(1).split(",") if v]
    raise AssertionError(f"no m-results-[...] in {lines}")


def laps_us(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for m in map(LAP_RE.match, lines) if m]
