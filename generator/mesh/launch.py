"""Launching PEs: QEMU machines or host processes, each with its host link on a pty.

:func:`launch` starts one built image and returns a :class:`PeProcess` whose ``serial_path`` is
the PE's host link (UART0) as a pty — the same kind of path a real board's serial port has, so
:class:`~generator.mesh.hostlink.HostLink` talks to QEMU, a host process and hardware alike.

- QEMU (``baremetal``/``west`` images): ``qemu-system-arm -M lm3s6965evb -cpu cortex-m3
  -display none -monitor none -serial pty -kernel fw.elf -icount shift=N,align=off,sleep=on``.
  ``sleep=on``: an idle guest (WFI) lets QEMU sleep until its next timer instead of warping
  virtual time in a busy loop (``sleep=off`` burns a host core per idle PE); compute is still
  counted exactly, so cycle counts of a run do not change. A mesh PE adds
  ``-chardev socket,id=noc,path=<fabric socket> -serial chardev:noc`` (UART1 = link 1).
  QEMU announces ``char device redirected to /dev/pts/N`` (stdout or stderr).
- host (``host`` images): the executable prints ``pemesh: link0 on /dev/pts/N``.

Cycles under QEMU. The firmware reports SysTick ticks. QEMU's lm3s6965evb clocks the core (and
SysTick's processor clock) from the system control block: 200 MHz / (SYSDIV+1) with the RCC reset
value's SYSDIV = 15, i.e. a tick period of 80 virtual ns (12.5 MHz; the board is nominally a 12 MHz
part). With ``-icount shift=N`` every guest instruction advances virtual time by 2^N ns, so

    instructions = ticks × 80 ns / 2^N

which is what ``pemesh run`` prints next to the raw cycle count (at N = 6, 1 instruction = 0.8 ticks).
Without icount virtual time follows the host clock and cycles are wall-clock-like.
"""

from __future__ import annotations

import atexit
import logging
import re
import shlex
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any, Sequence

from generator.errors import RunError, UsageError
from generator.firmware.build import BuildResult
from generator.firmware.toolchain import find_qemu

log = logging.getLogger(__name__)

#: Zephyr's CONFIG_QEMU_ICOUNT_SHIFT default
DEFAULT_ICOUNT_SHIFT = 6
#: virtual ns per SysTick tick on QEMU's lm3s6965evb (see the module docstring)
QEMU_TICK_NS = 80
QEMU_MACHINE = "lm3s6965evb"
#: QEMU machine → (cpu, virtual ns per SysTick tick). mps2-an386 clocks SysTick at 25 MHz
#: (1.6 ticks per instruction at shift 6; KERNELS.md "Calibration", docs/M4F.md)
QEMU_MACHINES = {"lm3s6965evb": ("cortex-m3", 80), "mps2-an386": ("cortex-m4", 40)}
QEMU_PTY_RE = re.compile(r"char device redirected to (/dev/pts/\d+)")
HOST_PTY_RE = re.compile(r"pemesh: link0 on (/dev/\S+)")
STARTUP_TIMEOUT = 10.0
BAUD = 115200

#: memory one running PE costs this machine (resident set, measured: a qemu-system-arm 7.2
#: lm3s6965evb PE 36.8 MB, a host-port PE 1.9 MB; plus the host side of its links), and the
#: file descriptors it needs here (pty, two pipes, the fabric's listening and connected socket)
PE_MEMORY_BYTES = {"qemu": 40 << 20, "host": 3 << 20}
PE_FDS = 6

_live: "weakref.WeakSet[PeProcess]" = weakref.WeakSet()
_atexit_registered = False


def qemu_machine(board: str | None) -> str:
    """The QEMU machine of a PE kind (``boards/pe/<board>.yaml``'s ``qemu``), default lm3s6965evb."""
    if board:
        try:
            from generator.boards.catalog import pe_kind_for_board
            kind = pe_kind_for_board(board)
            if kind.qemu in QEMU_MACHINES:
                return kind.qemu
        except Exception:  # noqa: BLE001 — an unknown board runs on the default machine
            pass
    return QEMU_MACHINE


def tick_ns(board: str | None) -> int:
    """Virtual ns per SysTick tick on the QEMU machine of ``board``."""
    return QEMU_MACHINES[qemu_machine(board)][1]


def qemu_command(image: Path, *, qemu: str = "qemu-system-arm",
                 icount_shift: int | None = DEFAULT_ICOUNT_SHIFT,
                 link1: str | None = None, gdb_port: int | None = None,
                 machine: str = QEMU_MACHINE) -> tuple[str, ...]:
    """The QEMU command line for one bare-metal/Zephyr qemu_cortex_m3 image.

    ``link1``: a unix socket (the fabric's endpoint) for UART1, the PE's mesh link.
    ``gdb_port``: expose QEMU's gdb stub on this localhost TCP port (the firmware still runs).
    """
    cmd = [qemu, "-M", machine, "-cpu", QEMU_MACHINES[machine][0], "-display", "none",
           "-monitor", "none"]
    if link1 is not None:
        cmd += ["-chardev", f"socket,id=noc,path={link1}"]
    cmd += ["-serial", "pty"]
    if link1 is not None:
        cmd += ["-serial", "chardev:noc"]
    cmd += ["-kernel", str(image)]
    if icount_shift is not None:
        cmd += ["-icount", f"shift={icount_shift},align=off,sleep=on"]
    if gdb_port is not None:
        cmd += ["-gdb", f"tcp:127.0.0.1:{int(gdb_port)}"]
    return tuple(cmd)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give: MemAvailable, capped by this process's
    cgroup limit (a batch job's memory: SLURM, containers), or ``PEMESH_MEMORY_AVAILABLE``
    (bytes) when set; None if unknown."""
    import os
    if os.environ.get("PEMESH_MEMORY_AVAILABLE", "").isdigit():
        return int(os.environ["PEMESH_MEMORY_AVAILABLE"])
    have = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                have = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:                                # cgroup v2: limit minus what the group already uses
        cg = Path("/sys/fs/cgroup") / Path("/proc/self/cgroup").read_text().split("::", 1)[1] \
            .strip().lstrip("/")
        limit = (cg / "memory.max").read_text().strip()
        if limit.isdigit():
            left = int(limit) - int((cg / "memory.current").read_text())
            have = left if have is None else min(have, left)
    except (OSError, ValueError, IndexError):
        pass
    return have


def check_capacity(n_pes: int, platform: str) -> None:
    """Refuse, before anything starts, a run whose PEs this machine cannot hold: their memory
    against MemAvailable and their file descriptors against RLIMIT_NOFILE (raised to the hard
    limit when that is enough). DoesNotFitError with the numbers."""
    from generator.errors import DoesNotFitError

    need = n_pes * PE_MEMORY_BYTES.get(platform, PE_MEMORY_BYTES["qemu"])
    have = available_memory()
    if have is not None and need > have:
        def size(n: int) -> str:
            return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"

        raise DoesNotFitError(
            f"{n_pes} {platform} PEs need about {size(need)} "
            f"({PE_MEMORY_BYTES[platform] >> 20} MiB each) and this machine has "
            f"{size(have)} available",
            hint="run on host PEs (--platform host, ~3 MiB each), on a smaller mesh "
                 "(--mesh, --replicas), or on several machines")
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return
    want = n_pes * PE_FDS + 64
    if soft != resource.RLIM_INFINITY and want > soft:
        if hard == resource.RLIM_INFINITY or want <= hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        else:
            raise DoesNotFitError(
                f"{n_pes} PEs need about {want} open files and this process may open {hard}",
                hint="raise the limit ('ulimit -n'), or run a smaller mesh")


def ticks_to_instructions(ticks: int, icount_shift: int, tick: int = QEMU_TICK_NS) -> float:
    """Guest instructions that took ``ticks`` SysTick ticks of ``tick`` virtual ns under
    ``-icount shift=N`` (the machine's tick: :func:`tick_ns`)."""
    return ticks * tick / float(1 << icount_shift)


def _pdeathsig_hook() -> Any:
    """A preexec_fn asking Linux to SIGTERM the child if pemesh dies without cleaning up.

    libc is loaded here, in the parent: the hook itself only calls prctl (no imports or locks
    in the forked child, where other threads' locks may be held).
    """
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
        return None
    sig = int(signal.SIGTERM)

    def hook() -> None:  # pragma: no cover - runs in the child
        prctl(1, sig)  # PR_SET_PDEATHSIG

    return hook


class PeProcess:
    """A running PE (QEMU or a host process) and its host-link pty. Close it when done."""

    def __init__(self, cmd: Sequence[str], *, name: str, pty_re: re.Pattern[str],
                 log_path: Path | None = None, startup_timeout: float = STARTUP_TIMEOUT,
                 icount_shift: int | None = None, platform: str = "qemu", wait: bool = True):
        self.cmd = tuple(cmd)
        self.name = name
        self.platform = platform
        self.icount_shift = icount_shift
        self.log_path = log_path
        self.serial_path: str = ""
        self._tail: deque[str] = deque(maxlen=40)
        self._found = threading.Event()
        self._pty_re = pty_re
        self._lock = threading.Lock()
        self._log_file = open(log_path, "w") if log_path else None
        self._closed = False
        log.debug("launch %s: %s", name, shlex.join(self.cmd))
        try:
            self.proc = subprocess.Popen(
                list(self.cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
                start_new_session=True, preexec_fn=_pdeathsig_hook())
        except OSError as err:
            self._close_log()
            raise RunError(f"cannot start {name}: {err}",
                           hint=f"command: {shlex.join(self.cmd)}") from None
        _register(self)
        self._readers = [threading.Thread(target=self._pump, args=(s,), daemon=True)
                         for s in (self.proc.stdout, self.proc.stderr)]
        for t in self._readers:
            t.start()
        self._startup_timeout = startup_timeout
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the process announced its host-link pty (RunError and close otherwise).

        ``launch(..., wait=False)`` starts processes without waiting, so that many PEs boot at
        once; the process must be started by a thread that outlives it (Linux sends the
        parent-death signal when the *thread* that forked a child exits).
        """
        if self._found.is_set():
            return
        try:
            self._await_pty(self._startup_timeout if timeout is None else timeout)
        except BaseException:
            self.close()
            raise

    def _pump(self, stream: Any) -> None:
        for line in stream:
            line = line.rstrip("\n")
            log.debug("%s: %s", self.name, line)
            with self._lock:
                self._tail.append(line)
                if self._log_file and not self._log_file.closed:
                    self._log_file.write(line + "\n")
                    self._log_file.flush()
            if not self._found.is_set():
                m = self._pty_re.search(line)
                if m:
                    self.serial_path = m.group(1)
                    self._found.set()

    def _await_pty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._found.wait(0.05):
            if self.proc.poll() is not None:
                for t in self._readers:
                    t.join(1.0)
                if self._found.is_set():
                    break
                raise RunError(f"{self.name} exited (code {self.proc.returncode}) before "
                               f"opening its host link:\n{self.output_tail()}",
                               hint=f"command: {shlex.join(self.cmd)}")
            if time.monotonic() > deadline:
                raise RunError(f"{self.name} did not announce its host-link pty within "
                               f"{timeout:g} s:\n{self.output_tail()}",
                               hint=f"command: {shlex.join(self.cmd)}")
        log.info("%s: host link on %s", self.name, self.serial_path)

    def output_tail(self) -> str:
        """The last lines the process printed."""
        with self._lock:
            return "\n".join(self._tail) or "(no output)"

    def open_serial(self, timeout: float = 1.0, *, raw: bool = False) -> Any:
        """Open the host link with pyserial, as one would a board's serial port (a
        :class:`PtyPort` when the descriptor is beyond select()'s limit: hundreds of PEs);
        ``raw``: a non-blocking :class:`PtyPort` (never select(): the mesh runner's ports)."""
        if raw:
            try:
                return PtyPort(self.serial_path, 0)
            except OSError as err:
                raise RunError(f"cannot open {self.name}'s host link {self.serial_path}: {err}",
                               hint="is the PE still running?") from None
        import serial
        try:
            port = serial.Serial(self.serial_path, BAUD, timeout=timeout)
            if port.fileno() < _FD_SETSIZE:
                return port
            port.close()
            return PtyPort(self.serial_path, timeout)
        except (serial.SerialException, OSError) as err:
            raise RunError(f"cannot open {self.name}'s host link {self.serial_path}: {err}",
                           hint="is the PE still running?") from None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the process (terminate, wait, kill). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
            except ProcessLookupError:  # pragma: no cover - already gone
                pass
        for t in self._readers:
            t.join(1.0)
        for s in (self.proc.stdout, self.proc.stderr):
            if s:
                s.close()
        self._close_log()
        _live.discard(self)
        log.debug("%s stopped (code %s)", self.name, self.proc.returncode)

    def _close_log(self) -> None:
        if self._log_file:
            with self._lock:
                self._log_file.close()

    def __enter__(self) -> "PeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - last resort
        try:
            self.close()
        except Exception:
            pass


#: select() (which pyserial's read and write use) takes descriptors below this only
_FD_SETSIZE = 1024


class PtyPort:
    """The part of ``serial.Serial`` HostLink uses (``read``, ``write``, ``timeout``,
    ``in_waiting``, ``fileno``, ``close``) on a pty in raw mode, waiting with poll() so that any
    descriptor number works (a run of hundreds of PEs opens more than 1024 descriptors)."""

    def __init__(self, path: str, timeout: float | None = None):
        import os
        import termios
        import tty

        self.timeout = timeout
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(self.fd, termios.TCSANOW)
        except termios.error:  # pragma: no cover - not a tty (tests pass a pipe)
            pass

    def fileno(self) -> int:
        return self.fd

    def _wait(self, event: int, timeout: float | None) -> bool:
        import select

        p = select.poll()
        p.register(self.fd, event)
        return bool(p.poll(None if timeout is None else max(0, int(timeout * 1000))))

    @property
    def in_waiting(self) -> int:
        import fcntl
        import struct
        import termios

        return struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]

    def read(self, size: int = 1) -> bytes:
        import os
        import select

        out = bytearray()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while len(out) < size:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 and out:
                break
            if not self._wait(select.POLLIN, left if left is None or left > 0 else 0):
                break
            try:
                data = os.read(self.fd, size - len(out))
            except BlockingIOError:
                continue
            if not data:
                break
            out += data
            if self.timeout == 0:
                break
        return bytes(out)

    def write(self, data: bytes) -> int:
        import os
        import select

        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                n = 0
            view = view[n:]
            if view:
                self._wait(select.POLLOUT, 1.0)
        return len(data)

    def close(self) -> None:
        import os

        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _register(proc: PeProcess) -> None:
    global _atexit_registered
    _live.add(proc)
    if not _atexit_registered:
        atexit.register(_close_all)
        _atexit_registered = True


def _close_all() -> None:
    for proc in list(_live):
        proc.close()


def launch(result: BuildResult, *, platform: str | None = None,
           icount_shift: int | None = DEFAULT_ICOUNT_SHIFT, log_dir: Path | None = None,
           name: str | None = None, startup_timeout: float = STARTUP_TIMEOUT,
           link1: str | None = None, wait: bool = True,
           gdb_port: int | None = None) -> PeProcess:
    """Start one built image: on QEMU (baremetal/west images) or as a host process.

    ``platform`` defaults to what the image is for; asking for the other raises UsageError.
    ``link1`` connects the PE's mesh link (UART1 / ``--link1 unix:…``) to a fabric socket.
    ``wait=False`` returns at once; call :meth:`PeProcess.wait_ready` before using the pty.
    The process log (its stdout and stderr) goes to ``log_dir/<name>.log`` when given.
    """
    platform = platform or ("qemu" if result.runs_on_qemu else "host")
    name = name or Path(result.app_dir).name
    log_path = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / f"{name}.log"
    if platform == "qemu":
        if not result.runs_on_qemu:
            raise UsageError(f"{name} was built for the host, not for QEMU",
                             hint="rebuild with 'pemesh build OUT --backend baremetal' or run "
                                  "with --platform host")
        cmd = qemu_command(result.image, qemu=str(find_qemu()), icount_shift=icount_shift,
                           link1=link1, gdb_port=gdb_port,
                           machine=qemu_machine(getattr(result, "board", None)))
        return PeProcess(cmd, name=name, pty_re=QEMU_PTY_RE, log_path=log_path,
                         startup_timeout=startup_timeout, icount_shift=icount_shift, wait=wait)
    if platform == "host":
        if result.backend != "host":
            raise UsageError(f"{name} was built for {result.backend}, not as a host process",
                             hint="rebuild with 'pemesh build OUT --backend host' or run with "
                                  "--platform qemu")
        cmd = (str(result.image),) + (("--link1", f"unix:{link1}") if link1 else ())
        return PeProcess(cmd, name=name, pty_re=HOST_PTY_RE, log_path=log_path,
                         startup_timeout=startup_timeout, platform="host", wait=wait)
    raise UsageError(f"unknown platform '{platform}'", hint="use qemu or host")


__all__ = ["PeProcess", "PtyPort", "launch", "qemu_command", "qemu_machine", "tick_ns", "ticks_to_instructions",
           "DEFAULT_ICOUNT_SHIFT", "QEMU_TICK_NS"]
