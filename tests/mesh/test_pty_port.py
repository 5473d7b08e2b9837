"""PtyPort (generator/mesh/launch.py): the host link of a PE whose descriptor is beyond select()'s
1024 (pyserial's read/write fail there: a run of hundreds of host PEs)."""

from __future__ import annotations

import os
import time

from generator.mesh.launch import PtyPort


def test_pty_port_reads_and_writes_like_pyserial():
    master, slave = os.openpty()
    try:
        port = PtyPort(os.ttyname(slave), timeout=0.5)
        assert port.read(4) == b""                      # nothing yet: times out
        os.write(master, b"\xa5\x5a\x01\x02")
        time.sleep(0.05)
        assert port.in_waiting == 4
        assert port.read(2) == b"\xa5\x5a" and port.read(10) == b"\x01\x02"
        port.timeout = 0                                # non-blocking, as MeshPeLink uses it
        assert port.read(65536) == b""
        payload = bytes(range(256)) * 40                # more than a pty buffers at once
        assert port.write(payload) == len(payload)
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < len(payload) and time.monotonic() < deadline:
            got += os.read(master, 65536)
        assert got == payload
        port.close()
        port.close()                                     # idempotent
    finally:
        os.close(master)
        os.close(slave)
