"""Mesh runs over MPI ranks (generator/mesh/mpi.py, shard.py, commands/run_mpi.py), for real: Open
MPI's ``mpirun -n 2|3`` on this machine, MPI kept on shared memory and loopback, every rank a
``pemesh run`` process with its own PE processes and fabric shard.

- a 10-PE pipeline of host PEs over 2 and 3 ranks: the same outputs and per-link bytes as the
  one-process run, PEs recorded on every rank, frames across ranks;
- --drop-rate over ranks: go-back-N and READY resends repair it, outputs check;
- a 4-PE QEMU mesh over 3 ranks;
- a rank killed mid-run is named with its host and PEs, no process is left behind;
- a block that does not fit its host is refused before anything starts, with the numbers;
- ``pemesh run --ranks 2`` starts mpirun itself; without mpi4py pemesh says what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from generator.boards.catalog import load_mesh
from generator.cli import main as pemesh
from generator.mesh.mpi import assign_blocks
from tests import paths
from tests.markers import needs_mpi, needs_qemu
from tests.mesh_zoo import mlp_autoencoder

ROOT = paths.REPO
#: Open MPI on one machine: shared memory + loopback only, as root if need be, more ranks
#: than cores
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "btl", "self,vader", "--mca",
          "oob_tcp_if_include", "lo"]
#: a READY frame (22 bytes of frame + 4 of payload): the only PE-to-PE frame a PE may resend
#: on its own clock (CONTRACTS §6 "Lost READYs heal"), so the only traffic that may differ
#: between two runs of the same inputs
READY_BYTES = 26


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def _pemesh_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "generator.cli", *args]


def _mpirun(n: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*MPIRUN, "-n", str(n), *_pemesh_cmd("run", *args)], env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _no_leftovers(out: Path) -> str:
    return subprocess.run(["pgrep", "-af", str(out / "build")], capture_output=True,
                          text=True).stdout.strip()


def _same_links(single: dict, ranked: dict) -> None:
    """Per-link bytes equal, up to a few READY frames a PE resent on its own timer."""
    assert set(single["links"]) == set(ranked["links"])
    for link, b in single["links"].items():
        diff = abs(ranked["links"][link] - b)
        assert diff % READY_BYTES == 0 and diff <= 4 * READY_BYTES, (link, b,
                                                                     ranked["links"][link])


@pytest.fixture(scope="module")
def host_out(tmp_path_factory) -> Path:
    """A 10-stage pipeline (the MLP autoencoder: 1.25 MiB of weights) on 10 host PEs."""
    tmp = tmp_path_factory.mktemp("mpi")
    model = tmp / "ae.onnx"
    onnx.save(mlp_autoencoder(), model)
    out = tmp / "out"
    assert pemesh(["compile", str(model), "-o", str(out), "--mesh", "qemu16"]) == 0
    assert pemesh(["build", str(out), "--backend", "host"]) == 0
    assert len(json.loads((out / "mesh.json").read_text())["pes"]) >= 10
    return out


@pytest.fixture(scope="module")
def single_run(host_out, tmp_path_factory) -> tuple[dict, np.ndarray]:
    y = tmp_path_factory.mktemp("single") / "y.npy"
    assert pemesh(["run", str(host_out), "--platform", "host", "--count", "3",
                   "--output", str(y)]) == 0
    return json.loads((host_out / "run.json").read_text()), np.load(y)


def test_blocks_are_whole_chips_or_row_bands():
    m64 = load_mesh("qemu64")                       # 2x2 chips of 4x4 PEs
    two = assign_blocks(m64, range(64), 2)
    assert {m64.chip_of(p): r for p, r in two.items()} == {0: 0, 1: 0, 2: 1, 3: 1}
    four = assign_blocks(m64, range(64), 4)
    assert sorted(list(four.values()).count(r) for r in range(4)) == [16] * 4
    assert len({(m64.chip_of(p), r) for p, r in four.items()}) == 4     # a chip per rank
    m16 = load_mesh("qemu16")                       # one chip: bands of rows
    three = assign_blocks(m16, range(10), 3)
    assert [three[p] for p in range(10)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


@needs_mpi
@pytest.mark.mpi
@pytest.mark.timeout(600)
@pytest.mark.parametrize("ranks", [2, 3])
def test_host_mesh_over_ranks_equals_one_process(host_out, single_run, tmp_path, ranks):
    single, y1 = single_run
    y = tmp_path / "y.npy"
    res = _mpirun(ranks, str(host_out), "--platform", "host", "--count", "3", "--output", str(y),
                  "--check")
    assert res.returncode == 0, res.stderr
    assert "check: OK" in res.stdout
    np.testing.assert_array_equal(np.load(y), y1)   # the same firmware: the same bits
    run = json.loads((host_out / "run.json").read_text())
    _same_links(single, run)
    # routed frames differ by READY resends only: each one is on the links' byte counts
    ready_bytes = sum(abs(run["links"][k] - b) for k, b in single["links"].items())
    assert abs(run["fabric"]["routed_frames"] - single["fabric"]["routed_frames"]) \
        <= ready_bytes // READY_BYTES
    assert {p["rank"] for p in run["pes"].values()} == set(range(ranks))
    assert all(p["host"] for p in run["pes"].values())
    assert [r["rank"] for r in run["ranks"]] == list(range(ranks))
    assert sum(r["frames_out"] for r in run["ranks"]) > 0
    assert sum(r["frames_out"] for r in run["ranks"]) == sum(r["frames_in"] for r in run["ranks"])
    assert f"rank {ranks - 1} (host " in res.stdout
    assert _no_leftovers(host_out) == ""


@needs_mpi
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_faults_over_ranks_are_repaired(host_out):
    res = _mpirun(2, str(host_out), "--platform", "host", "--count", "3", "--drop-rate", "0.05",
                  "--fault-seed", "3", "--check")
    assert res.returncode == 0, res.stderr
    run = json.loads((host_out / "run.json").read_text())
    assert run["fabric"]["injected_drops"] > 0
    assert "check: OK" in res.stdout


def _descendants(pid: int) -> list[int]:
    kids = [int(k) for k in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                           text=True).stdout.split()]
    return kids + [d for k in kids for d in _descendants(k)]


@needs_mpi
@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["mpirun", "--ranks", "recovery"])
def test_killed_rank_is_named_and_nothing_is_left(host_out, how):
    """Open MPI's default: the launcher SIGTERMs the other ranks when one dies, and rank 0
    names the rank that answers nothing; with --enable-recovery the job goes on and rank 0
    notices the silence (heartbeats, 5 s)."""
    run = _pemesh_cmd("run", str(host_out), "--platform", "host", "--count", "1000000")
    cmd = {"mpirun": [*MPIRUN, "-n", "2", *run], "--ranks": [*run, "--ranks", "2"],
           "recovery": [*MPIRUN, "--enable-recovery", "-n", "2", *run]}[how]
    tmp = tempfile.mkdtemp(prefix="t14-", dir="/tmp")     # the fabrics' socket folders
    proc = subprocess.Popen(cmd, env=dict(_env(), TMPDIR=tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        rank1 = None
        deadline = time.monotonic() + 90
        while rank1 is None and time.monotonic() < deadline:
            time.sleep(0.5)
            pes = _no_leftovers(host_out)           # PEs up: the run is on
            for pid in _descendants(proc.pid):
                try:
                    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"OMPI_COMM_WORLD_RANK=1" in env and pes.count("\n") >= 9:
                    rank1 = pid
                    break
        assert rank1 is not None, "rank 1 did not start its PEs"
        time.sleep(2)                                # mid-run
        os.kill(rank1, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # a bare mpirun exits with its own code (137: a rank was killed; 0 under --enable-recovery,
    # whatever rank 0 returned); --ranks with RunError's
    if how != "recovery":
        assert proc.returncode == (8 if how == "--ranks" else proc.returncode) != 0
    else:
        assert "stopped answering while the host awaited" in err
    assert "pemesh run: error: rank 1 on host " in err, err
    # the PEs named are rank 1's block of this plan (first and last, and how many)
    pes = [p["id"] for p in json.loads((host_out / "mesh.json").read_text())["pes"]]
    block = sorted(pe for pe, r in assign_blocks(load_mesh("qemu16"), pes, 2).items() if r == 1)
    assert f"pe{block[0]}" in err and f"pe{block[-1]}" in err, (block, err)
    assert "Traceback" not in err
    time.sleep(1)
    assert _no_leftovers(host_out) == ""
    assert os.listdir(tmp) == [], "a fabric's socket folder was left behind"
    os.rmdir(tmp)


@needs_mpi
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_pe_killed_on_another_rank_is_named_with_its_rank(host_out):
    plan = json.loads((host_out / "mesh.json").read_text())
    name = sorted(plan["pes"], key=lambda p: p["id"])[-1]["name"]     # on the last rank
    proc = subprocess.Popen([*MPIRUN, "-n", "2", *_pemesh_cmd(
        "run", str(host_out), "--platform", "host", "--count", "1000000")], env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim, deadline = None, time.monotonic() + 90
        while victim is None and time.monotonic() < deadline:
            time.sleep(0.5)
            if _no_leftovers(host_out).count("\n") >= 9:
                found = subprocess.run(["pgrep", "-f", str(host_out / "build" / name / "pe")],
                                       capture_output=True, text=True).stdout.split()
                victim = int(found[0]) if found else None
        assert victim is not None
        time.sleep(2)
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 8, err
    assert f"({name}, stage " in err and "on rank 1 (host " in err and "exited" in err, err
    time.sleep(1)
    assert _no_leftovers(host_out) == ""


@needs_mpi
@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_block_that_does_not_fit_is_refused_before_start(host_out):
    py = _pemesh_cmd("run", str(host_out), "--platform", "host")
    logs = {p.name: p.stat().st_mtime_ns for p in (host_out / "run").glob("*.log")}
    res = subprocess.run([*MPIRUN, "-n", "1", *py, ":", "-n", "1", "env",
                          "PEMESH_MEMORY_AVAILABLE=1000000", *py], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 4, res.stderr
    assert "rank 1 on host " in res.stderr and "the block of " in res.stderr
    assert "MiB available" in res.stderr and "Traceback" not in res.stderr
    # no PE started: no PE log was (re)written
    assert {p.name: p.stat().st_mtime_ns for p in (host_out / "run").glob("*.log")} == logs
    assert _no_leftovers(host_out) == ""


@needs_mpi
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_ranks_option_starts_mpirun(host_out):
    env = _env()
    res = subprocess.run(_pemesh_cmd("run", str(host_out), "--platform", "host", "--ranks", "2",
                                     "--check"), env=env, capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, res.stderr
    run = json.loads((host_out / "run.json").read_text())
    assert len(run["ranks"]) == 2 and "check: OK" in res.stdout


def test_without_mpi4py_says_what_to_install(host_out, tmp_path):
    """Started by a launcher (its environment) but mpi4py cannot be imported."""
    code = ("import sys; sys.modules['mpi4py'] = None; from generator.cli import main; "
            f"sys.exit(main(['run', {str(host_out)!r}, '--platform', 'host']))")
    env = dict(_env(), OMPI_COMM_WORLD_RANK="0", OMPI_COMM_WORLD_SIZE="2")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 6, res.stderr
    assert "pip install 'pemesh[mpi]'" in res.stderr and "Traceback" not in res.stderr
    code = code.replace("'host']", "'host', '--ranks', '2']")
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 6 and "mpi4py" in res.stderr, res.stderr


@needs_mpi
@needs_qemu
@pytest.mark.mpi
@pytest.mark.qemu
@pytest.mark.timeout(600)
def test_qemu_mesh_over_3_ranks(tmp_path):
    out = tmp_path / "out"
    assert pemesh(["compile", str(ROOT / "examples" / "tiny_cnn.onnx"), "-o", str(out), "--mesh",
                   "qemu4", "--replicas", "2"]) == 0
    assert pemesh(["build", str(out), "--backend", "baremetal"]) == 0
    y1, y3 = tmp_path / "y1.npy", tmp_path / "y3.npy"
    assert pemesh(["run", str(out), "--count", "2", "--output", str(y1)]) == 0
    single = json.loads((out / "run.json").read_text())
    res = _mpirun(3, str(out), "--count", "2", "--output", str(y3), "--check")
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(np.load(y3), np.load(y1))
    run = json.loads((out / "run.json").read_text())
    _same_links(single, run)
    assert {p["rank"] for p in run["pes"].values()} == {0, 1, 2}
    assert sum(r["frames_out"] for r in run["ranks"]) > 0
    assert run["pes"]["pe0"]["instructions"] > 0
    assert _no_leftovers(out) == ""


def test_mpirun_is_installed_where_setup_ran():
    """scripts/setup.sh installs Open MPI and mpi4py for the tests: in CI they must be here."""
    if not os.environ.get("CI"):
        pytest.skip("checked in CI only")
    assert shutil.which("mpirun") is not None
    import mpi4py  # noqa: F401
