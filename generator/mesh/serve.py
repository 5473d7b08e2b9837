"""Serving the PEs of OUT/ to outside tools (``pemesh serve``): boot them, hand out the ptys.

:class:`MeshServer` launches every PE of a :class:`~generator.mesh.runner.RunPlan` with
:func:`~generator.mesh.launch.launch` (QEMU, or host processes) and, for more than one PE, the
:class:`~generator.mesh.fabric.Fabric` between their mesh links — as ``pemesh run`` does — but
opens no host link itself: each PE's UART0 pty is left to whoever connects (the MLPerf Tiny
runner, pyserial-miniterm, a user's script, :class:`~generator.mesh.hostlink.HostLink`), exactly
like a board on /dev/ttyACM0. :meth:`MeshServer.close` stops everything and is idempotent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from generator.errors import RunError
from generator.firmware.build import load_app_spec
from generator.mesh.fabric import Fabric
from generator.mesh.launch import DEFAULT_ICOUNT_SHIFT, PeProcess, launch
from generator.mesh.runner import RunPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedLink:
    """One PE's host link as served: where to open it and what it speaks."""

    pe: str                 # PE name, e.g. "pe0"
    pe_id: int
    stage: str
    protocol: str           # "pemesh" (frames) or "eembc" (MLPerf Tiny DUT text)
    role: str               # "entry", "exit", "entry+exit" or "inner"
    serial_path: str        # the pty, e.g. /dev/pts/4

    def describe(self) -> str:
        return (f"host link {self.pe}: {self.serial_path} (PE {self.pe_id}, stage {self.stage}, "
                f"{self.role}, protocol {self.protocol})")


class MeshServer:
    """The PEs of a plan, running until :meth:`close` (a context manager)."""

    def __init__(self, plan: RunPlan, *, platform: str | None = None,
                 icount_shift: int | None = DEFAULT_ICOUNT_SHIFT, startup_timeout: float = 30.0,
                 log_dir: Path | None = None):
        self.plan = plan
        any_image = next(iter(plan.pes.values())).image
        self.platform = platform or ("qemu" if any_image.runs_on_qemu else "host")
        self.icount_shift = icount_shift if self.platform == "qemu" else None
        self.startup_timeout = startup_timeout
        self.log_dir = log_dir
        self.fabric: Fabric | None = (Fabric(plan.geometry, list(plan.pes))
                                      if len(plan.pes) > 1 else None)
        self.procs: dict[int, PeProcess] = {}
        self.links: list[ServedLink] = []
        self._closed = False

    def _role(self, pe_id: int) -> str:
        entry = any(pe == pe_id for r in self.plan.replicas for pe, *_ in r.entry)
        exit_ = any(pe == pe_id for r in self.plan.replicas for pe, *_ in r.exit)
        return {(True, True): "entry+exit", (True, False): "entry",
                (False, True): "exit"}.get((entry, exit_), "inner")

    def start(self) -> "MeshServer":
        """Start the fabric (2+ PEs) and every PE; wait for their ptys (and mesh links)."""
        try:
            if self.fabric is not None:
                self.fabric.start()
            pes = sorted(self.plan.pes.values(), key=lambda p: p.id)
            for pe in pes:
                link1 = self.fabric.path(pe.id) if self.fabric is not None else None
                self.procs[pe.id] = launch(pe.image, platform=self.platform,
                                           icount_shift=self.icount_shift, log_dir=self.log_dir,
                                           name=pe.name, startup_timeout=self.startup_timeout,
                                           link1=link1, wait=False)
            deadline = time.monotonic() + self.startup_timeout
            for pe in pes:
                proc = self.procs[pe.id]
                proc.wait_ready(max(0.5, deadline - time.monotonic()))
                spec = load_app_spec(pe.image.app_dir)
                self.links.append(ServedLink(pe.name, pe.id, pe.stage, spec.host_protocol,
                                             self._role(pe.id), proc.serial_path))
            if self.fabric is not None:
                missing = self.fabric.wait_connected(self.plan.pes, self.startup_timeout)
                if missing:
                    raise RunError(f"{self.plan.pes[missing[0]].describe()} did not connect "
                                   f"its mesh link (UART1) to the fabric within "
                                   f"{self.startup_timeout:g} s",
                                   hint="check the PE's log under OUT/run/")
        except BaseException:
            self.close()
            raise
        return self

    def dead(self) -> list[str]:
        """Descriptions of PEs whose process has exited (with the end of their output)."""
        return [f"{self.plan.pes[i].describe()} exited (code {p.proc.returncode}):\n"
                f"{p.output_tail()}" for i, p in sorted(self.procs.items()) if not p.running]

    def close(self) -> None:
        """Stop every PE and the fabric. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for proc in self.procs.values():
            proc.close()
        if self.fabric is not None:
            self.fabric.stop()

    def __enter__(self) -> "MeshServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
