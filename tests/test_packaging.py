"""A non-editable install carries templates/, boards/ and zephyr_app/ and finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_data_and_installed_package_finds_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(ROOT)], check=True)
    wheel = next((tmp_path / "dist").glob("pemesh-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in ("generator/_data/templates/pe_app/CMakeLists.txt.j2",
                   "generator/_data/templates/project_api/microtvm_api_server.py",
                   "generator/_data/boards/pe/qemu_cortex_m3.yaml",
                   "generator/_data/zephyr_app/zephyr/module.yml",
                   "generator/_data/zephyr_app/src/pe.c",
                   "generator/_data/zephyr_app/ports/lm3s6965/lm3s6965.ld"):
        assert member in names, member
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)
    code = ("import generator.paths as p; "
            "print(p.templates_dir()); print(p.boards_dir()); print(p.runtime_dir())")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_dir() and str(site) in p for p in out), out
    # and the installed package lists the boards from its own copy
    out = subprocess.run([sys.executable, "-m", "generator.cli", "boards"], cwd=tmp_path,
                         env=env, check=True, capture_output=True, text=True).stdout
    assert "qemu_cortex_m3" in out and "spinnaker2_board" in out
