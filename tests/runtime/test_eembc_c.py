"""The EEMBC / MLPerf Tiny protocol in C (zephyr_app/src/eembc.c) against a stub model and stub
port (tests/fixtures/runtime_c/eembc_main.c), built with -Wall -Wextra -Werror on gcc and
arm-none-eabi-gcc; and the Kconfig range of PEMESH_MAX_PAYLOAD against what the PE compiles with."""

from __future__ import annotations

import re
import struct
import subprocess

import pytest

from tests.paths import FIXTURES, RUNTIME
from tests.runtime_c_helpers import ARM, WARN, cc, needs_arm, needs_gcc

INC = [f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}"]
EEMBC = ["-DCONFIG_PEMESH_HOST_PROTOCOL_EEMBC=1", "-DPEMESH_PORT_HOST=1"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    exe = tmp_path_factory.mktemp("eembc") / "eembc"
    cc(["gcc", *WARN, *EEMBC, *INC, FIXTURES / "runtime_c" / "eembc_main.c",
        RUNTIME / "src" / "eembc.c", "-o", exe, "-lm"])
    return exe


def _run(exe, text: str, piece: int = 1, *floats: tuple[str, int]) -> str:
    args = [str(exe), text, str(piece)]
    for v, d in floats:
        args += ["F", v, str(d)]
    return subprocess.run(args, capture_output=True, timeout=10, check=True).stdout.decode()


@needs_gcc
@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_session_any_split(harness, piece):
    data = bytes(range(1, 9))  # sum 36
    text = ("name%profile%db load 8%db " + data[:5].hex() + "%db " + data[5:].hex()
            + "ff%infer 2 1%results%")
    out = _run(harness, text, piece)
    lines = out.split("\r\n")
    assert lines[:2] == ["m-init-done", "m-ready"]
    assert "m-name-dut-[stub_model]" in lines
    assert "m-model-[stub_model]" in lines
    assert "m-[Expecting 8 bytes]" in lines
    assert lines.count("m-load-done") == 1
    i = lines.index("m-warmup-start-1")
    assert lines[i:i + 3] == ["m-warmup-start-1", "m-warmup-done", "m-infer-start-2"]
    assert re.fullmatch(r"m-lap-us-\d+", lines[i + 3]) and re.fullmatch(r"m-lap-us-\d+", lines[i + 4])
    # the stub clock (ns, as the host port) reads 5e15 + k * 1234567891 at its k-th reading;
    # m-lap-us is the whole microseconds, truncated to u32 as %lu on a 32-bit DUT
    laps = [int(lines[i + 3][9:]), int(lines[i + 4][9:])]
    assert laps == [((5 * 10**15 + k * 1234567891) // 1000) % 2**32 for k in (1, 2)]
    assert lines[i + 5] == "m-infer-done"
    # float32 as is, int8 dequantized: (q - 1) * 0.5
    assert lines[i + 6] == "m-results-[36.000,-0.333,-3.000,3.000]"
    assert lines.count("m-results-[36.000,-0.333,-3.000,3.000]") == 2  # and `results`
    assert lines.count("m-ready") == 1 + 7  # start-up + one per command
    assert "runs=3" in out


@needs_gcc
def test_errors(harness):
    out = _run(harness, "db load 9%infer%db%db 123%frob x%infer 0%"
               + "x" * 90 + "%results%", 1000)
    for msg in ("e-[db load: the model's inputs take 8 bytes]",
                "e-[infer: load the 8 input bytes first (db load N, db HH...)]",
                "e-[Command 'db' requires a subcommand]",
                "e-[Insufficent number of hex digits]",
                "e-[Unknown command: frob]",
                "e-[Inference iterations must be >0]",
                "e-[Command longer than 80 characters]",
                "e-[results: no inference has run]"):
        assert msg + "\r\n" in out, msg
    assert out.count("m-ready") == 1 + 8
    assert "runs=0" in out


@needs_gcc
def test_format_float(harness):
    cases = [("0.0005", 3, "0.001"), ("-0.3333", 3, "-0.333"), ("2.5", 0, "3"),
             ("123456.789", 2, "123456.79"), ("nan", 3, "nan"), ("inf", 3, "inf"),
             ("-inf", 1, "-inf"), ("1e30", 3, "inf"), ("-0.0001", 3, "-0.000"),
             ("0.1234567", 9, "0.123456702")]
    out = _run(harness, "", 1, *[(v, d) for v, d, _ in cases])
    got = [line[2:] for line in out.splitlines() if line.startswith("F ")]
    assert got == [want for *_, want in cases]


@needs_arm
def test_arm_werror(tmp_path):
    for extra in ([], EEMBC[:1]):
        for src in ("eembc.c", "eembc_mesh.c", "pe.c", "pe_stage.c"):
            cc([*ARM, *WARN, "-Os", *extra, "-DPEMESH_PORT_LM3S6965=1", *INC, "-c",
                RUNTIME / "src" / src, "-o", tmp_path / "x.o"])


@needs_gcc
def test_kconfig_payload_range_starts_where_the_pe_compiles(tmp_path):
    """The lowest CONFIG_PEMESH_MAX_PAYLOAD Kconfig allows is the lowest pe.c compiles with
    (its PONG and STATS payloads must fit one frame)."""
    m = re.search(r"config PEMESH_MAX_PAYLOAD\n(?:\t.*\n)*?\trange (\d+) (\d+)",
                  (RUNTIME / "Kconfig").read_text())
    assert m, "no range for PEMESH_MAX_PAYLOAD in zephyr_app/Kconfig"
    low = int(m.group(1))

    def compiles(payload: int) -> bool:
        return subprocess.run(["gcc", *WARN, f"-DCONFIG_PEMESH_MAX_PAYLOAD={payload}", *INC,
                               "-c", str(RUNTIME / "src" / "pe.c"), "-o",
                               str(tmp_path / "pe.o")], capture_output=True).returncode == 0

    assert compiles(low), f"range starts at {low}, but pe.c does not compile with it"
    assert not compiles(low - 1), f"pe.c compiles with {low - 1}: the range could start lower"


@needs_gcc
def test_lap_us_at_the_qemu_systick_rate(tmp_path):
    """lm3s6965 under QEMU: 12.5 MHz SysTick ticks → µs exactly (×0.08, not ÷12)."""
    exe = tmp_path / "eembc_12m5"
    cc(["gcc", *WARN, "-DCONFIG_PEMESH_HOST_PROTOCOL_EEMBC=1", "-DPEMESH_CYCLES_PER_SEC=12500000u",
        *INC, FIXTURES / "runtime_c" / "eembc_main.c", RUNTIME / "src" / "eembc.c", "-o", exe,
        "-lm"])
    lines = _run(exe, "timestamp%timestamp%", 1000).split("\r\n")
    laps = [int(line[9:]) for line in lines if line.startswith("m-lap-us-")]
    assert laps == [((5 * 10**15 + k * 1234567891) * 2 // 25) % 2**32 for k in (1, 2)]
