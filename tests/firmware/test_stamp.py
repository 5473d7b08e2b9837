"""Stamping PE identities (generator/firmware/stamp.py): the 128 bytes packed in Python equal what the
generated pe_config.c compiles to; stamped images equal images built directly from each PE's own
app, byte for byte (ELF and .bin); images that cannot be stamped are refused; a stamped PE
answers with its own id (host process, and QEMU)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests import paths
from generator.firmware import stamp
from generator.firmware.build import build_app
from generator.firmware.images import build_key, build_mesh_report, load_build
from generator.errors import BuildError, UsageError
from generator.mesh.hostlink import HostLink
from generator.paths import runtime_dir
from generator.firmware.render import render_pe_app
from generator.mesh.launch import launch
from generator.types import AppSpec, Route, TensorSpec

from tests.out_tree import write_test_manifest
from tests.markers import needs_arm, needs_qemu

FIXTURES = paths.FIXTURES


# --- a mesh OUT/ of demo-model stages --------------------------------------------------------

def stage_model(out: Path, stage: str) -> str:
    """OUT/stages/<stage>/model: tests/fixtures/demo_model renamed to ``stage``."""
    dst = out / "stages" / stage / "model"
    if not dst.exists():
        for src in (FIXTURES / "demo_model").rglob("*"):
            if src.is_file():
                text = src.read_text().replace("tvmgen_demo", f"tvmgen_{stage}") \
                    .replace("TVMGEN_DEMO", f"TVMGEN_{stage.upper()}")
                target = dst / src.relative_to(FIXTURES / "demo_model")
                target = target.with_name(target.name.replace("demo", stage))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    return f"../../stages/{stage}/model"


def demo_spec(name: str, pe_id: int, stage: str = "demo", **kw) -> AppSpec:
    return AppSpec(
        pe_name=name, pe_id=pe_id, board="qemu_cortex_m3", stage=stage,
        inputs=(TensorSpec("x", (96,), "float32"), TensorSpec("bias", (4,), "float32")),
        outputs=(TensorSpec("out", (96,), "float32"), TensorSpec("total", (1,), "float32")),
        workspace_size=384, model_dir=f"../../stages/{stage}/model", **kw)


def make_mesh_out(out: Path, specs: list[AppSpec]) -> Path:
    """OUT/ with mesh.json, the stages' models and one rendered app per spec."""
    for s in specs:
        stage_model(out, s.stage)
        render_pe_app(s, out / "pes" / s.pe_name)
    write_test_manifest(out, specs)
    return out


def _stage_routes(pe_id: int) -> tuple[Route, ...]:
    return (Route(Route.SOURCE, 0, 0xFFFF, 0), Route(Route.SOURCE, 1, pe_id + 1, 1),
            Route(Route.OUTPUT, 0, pe_id + 2, 0), Route(Route.OUTPUT, 1, 0xFFFF, 1))


def _renderable(spec: AppSpec, app: Path) -> None:
    render_pe_app(spec, app)


# --- the 128 bytes ---------------------------------------------------------------------------

def test_constants_match_config_h():
    text = (runtime_dir() / "include" / "pemesh" / "config.h").read_text()
    defines = dict(re.findall(r"#define (PEMESH_PE_CONFIG_\w+) (\w+?)u\b", text))
    assert int(defines["PEMESH_PE_CONFIG_MAGIC"], 16) == stamp.MAGIC
    assert int(defines["PEMESH_PE_CONFIG_VERSION"]) == stamp.VERSION
    assert int(defines["PEMESH_PE_CONFIG_SIZE"]) == stamp.SIZE
    assert int(defines["PEMESH_PE_CONFIG_ROUTE_BYTES"]) == stamp.ROUTE_BYTES
    for role, value in re.findall(r"PEMESH_ROLE_(\w+) = (\d+)", text):
        assert stamp.ROLE_VALUES[role.lower()] == int(value)


SPECS = [
    demo_spec("pe0", 0),
    demo_spec("pe7", 7),
    demo_spec("pe_big", 0xFFFE),
    demo_spec("s3", 513, role="stage", routes=_stage_routes(513), flags=1),
    demo_spec("s4", 4, role="stage", flags=0x80000001, routes=tuple(
        Route(Route.OUTPUT, i % 2, 0x100 + i, 0xF0F0 + i) for i in range(stamp.MAX_ROUTES - 2))
        + (Route(Route.SOURCE, 0, 0xFFFF, 0), Route(Route.SOURCE, 1, 3, 1))),
]


@pytest.mark.parametrize("cc", ["arm-none-eabi-gcc", "gcc"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.pe_name)
def test_pack_equals_compiled_pe_config(tmp_path, spec, cc):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    stage_model(tmp_path, spec.stage)
    app = tmp_path / "pes" / spec.pe_name
    _renderable(spec, app)
    obj = tmp_path / "pe_config.o"
    flags = ["-mcpu=cortex-m3", "-mthumb"] if cc.startswith("arm") else []
    subprocess.run([cc, *flags, "-Os", "-Wall", "-Wextra", "-Werror",
                    f"-I{runtime_dir() / 'include'}", "-c", str(app / "src/pe_config.c"),
                    "-o", str(obj)], check=True)
    compiled = stamp.read_config(obj)
    assert compiled == stamp.pack_pe_config(spec)
    cfg = stamp.unpack_pe_config(compiled)
    assert (cfg.pe_id, cfg.flags, cfg.routes) == (spec.pe_id, spec.flags, spec.routes)
    assert cfg.role == stamp.ROLE_VALUES[spec.role]




def test_pack_layout_by_hand():
    raw = stamp.pack_pe_config(demo_spec("s", 0x1234, role="stage", flags=0x01020304,
                                         routes=(Route(1, 2, 0xFFFF, 0x0506),)))
    assert raw[:16] == bytes.fromhex("50454d43" "0100" "3412" "01" "01" "0000" "04030201")
    assert raw[16:22] == bytes.fromhex("0102ffff0605") and raw[22:] == bytes(106)


def test_pack_refuses_what_does_not_fit():
    with pytest.raises(UsageError, match="19 routes"):
        stamp.pack_pe_config(demo_spec("a", 1, routes=(Route(1, 0, 2, 0),) * 19))
    with pytest.raises(UsageError, match="outside"):
        stamp.pack_pe_config(demo_spec("a", 0xFFFF))
    with pytest.raises(UsageError, match="unknown role"):
        stamp.pack_pe_config(demo_spec("a", 1, role="boss"))
    with pytest.raises(UsageError, match="out of range"):
        stamp.pack_pe_config(demo_spec("a", 1, routes=(Route(1, 256, 2, 0),)))
    with pytest.raises(BuildError, match="magic"):
        stamp.unpack_pe_config(bytes(128))


# --- refusing images that cannot be stamped --------------------------------------------------

@pytest.fixture(scope="module")
def built_pe(tmp_path_factory):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    out = tmp_path_factory.mktemp("one")
    spec = demo_spec("pe0", 0)
    stage_model(out, "demo")
    render_pe_app(spec, out / "pes/pe0")
    return build_app(out / "pes/pe0", out / "build/pe0", "baremetal")


def test_location_in_firmware(built_pe):
    raw = built_pe.image.read_bytes()
    loc = stamp.find_config(raw)
    # lm3s6965.ld: .pemesh_config right after the vectors, in flash at 0x0
    assert loc.size == 128 and loc.lma == loc.address and 0 < loc.bin_offset < 0x400
    assert built_pe.bin.read_bytes()[loc.bin_offset:loc.bin_offset + 128] == \
        raw[loc.offset:loc.offset + 128] == stamp.pack_pe_config(demo_spec("pe0", 0))


def test_refuses_image_without_section(built_pe, tmp_path):
    bare = tmp_path / "bare.elf"
    subprocess.run(["arm-none-eabi-objcopy", "--remove-section", ".pemesh_config",
                    str(built_pe.image), str(bare)], check=True)
    with pytest.raises(BuildError, match=r"has no \.pemesh_config section") as err:
        stamp.stamp_image(bare, None, demo_spec("pe1", 1), tmp_path / "x.elf")
    assert err.value.hint and not (tmp_path / "x.elf").exists()


def test_refuses_section_of_wrong_size(tmp_path):
    src = tmp_path / "short.c"
    src.write_text('__attribute__((section(".pemesh_config"), used))\n'
                   'const unsigned char cfg[64] = {0x50, 0x45, 0x4d, 0x43, 1};\n')
    obj = tmp_path / "short.o"
    subprocess.run(["gcc", "-c", str(src), "-o", str(obj)], check=True)
    with pytest.raises(BuildError, match=r"\.pemesh_config is 64 bytes.*not the 128"):
        stamp.stamp_image(obj, None, demo_spec("pe1", 1), tmp_path / "x.o")


def test_refuses_bad_magic_not_elf_and_foreign_bin(built_pe, tmp_path):
    raw = bytearray(built_pe.image.read_bytes())
    loc = stamp.find_config(bytes(raw))
    raw[loc.offset] ^= 0xFF
    bad = tmp_path / "bad.elf"
    bad.write_bytes(bytes(raw))
    with pytest.raises(BuildError, match="not a pemesh_pe_config"):
        stamp.load_stamp_source(bad)
    with pytest.raises(BuildError, match="not an ELF"):
        stamp.load_stamp_source(built_pe.bin)
    short = tmp_path / "short.bin"
    short.write_bytes(built_pe.bin.read_bytes()[:loc.bin_offset])
    with pytest.raises(BuildError, match="does not hold"):
        stamp.load_stamp_source(built_pe.image, short)
    with pytest.raises(BuildError, match="truncated"):
        stamp.find_config(built_pe.image.read_bytes()[:200])


# --- stamped == built directly -----------------------------------------------------------------

def _direct_equals_stamped(out: Path, report, direct: Path, backend: str) -> None:
    for pe, img in report.images.items():
        if img.how != "stamped":
            continue
        ref = build_app(out / "pes" / pe, direct / pe, backend)
        assert img.result.image.read_bytes() == ref.image.read_bytes(), pe
        if backend != "host":
            assert img.result.bin.read_bytes() == ref.bin.read_bytes(), pe
        got = stamp.unpack_pe_config(stamp.read_config(img.result.image))
        assert got.pe_id == json.loads((out / "pes" / pe / "pemesh_app.json").read_text())[
            "pe_id"]


@needs_arm
@pytest.mark.timeout(300)
def test_stamped_firmware_equals_direct_build(tmp_path):
    """ELFs are compared whole: the direct build goes to another folder (tmp/direct/<pe>) from
    the PE's own app folder; -ffile-prefix-map=<app>=. and compiling in the app folder keep
    both paths out of the image, and nothing else in it depends on the folder."""
    specs = [demo_spec("a0", 0, "s1"), demo_spec("a1", 7, "s1"), demo_spec("b0", 300, "s2"),
             demo_spec("a2", 4095, "s1"), demo_spec("b1", 2, "s2")]
    specs += [demo_spec("c0", 40, "s3", role="stage", routes=_stage_routes(40)),
              demo_spec("c1", 41, "s3", role="stage", routes=_stage_routes(41), flags=1)]
    out = make_mesh_out(tmp_path / "out", specs)
    report = build_mesh_report(out, "baremetal", jobs=2)
    stages = {s.stage for s in specs}
    assert report.built == len(stages) and report.stamped == len(specs) - len(stages)
    assert {img.source for img in report.images.values()} == {"a0", "b0", "c0"}
    _direct_equals_stamped(out, report, tmp_path / "direct", "baremetal")
    record, results = load_build(out)
    assert record.totals["images_built"] == len(stages)
    assert record.images["a1"].how == "stamped" and record.images["a1"].source == "a0"
    assert record.images["a1"].bin == "build/a1/fw.bin"
    assert results["b1"].image == (out / "build/b1/fw.elf").resolve()
    # the images of one stage differ exactly in the 128 stamped bytes
    a0, a1 = (results[p].bin.read_bytes() for p in ("a0", "a1"))
    diff = [i for i in range(len(a0)) if a0[i] != a1[i]]
    loc = stamp.find_config(results["a0"].image.read_bytes())
    assert diff and loc.bin_offset <= diff[0] and diff[-1] < loc.bin_offset + 128


@pytest.mark.timeout(300)
def test_stamped_host_pe_equals_direct_build_and_answers_as_itself(tmp_path):
    out = make_mesh_out(tmp_path / "out", [demo_spec("h0", 0), demo_spec("h1", 9)])
    report = build_mesh_report(out, "host", jobs=2)
    assert (report.built, report.stamped) == (1, 1)
    assert report.images["h1"].result.image.stat().st_mode & 0o111
    _direct_equals_stamped(out, report, tmp_path / "direct", "host")
    with launch(report.images["h1"].result, log_dir=tmp_path / "log", name="h1") as proc, \
            proc.open_serial() as port:
        pong = HostLink(port, pe_id=9, timeout=20).ping()
    assert pong.pe_id == 9


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(300)
def test_stamped_firmware_answers_as_itself_on_qemu(tmp_path):
    out = make_mesh_out(tmp_path / "out", [demo_spec("q0", 0), demo_spec("q1", 300)])
    report = build_mesh_report(out, "baremetal", jobs=2)
    assert report.images["q1"].how == "stamped"
    with launch(report.images["q1"].result, log_dir=tmp_path / "log", name="q1") as proc, \
            proc.open_serial() as port:
        pong = HostLink(port, pe_id=300, timeout=30).ping()
    assert pong.pe_id == 300


def test_build_key_ignores_only_the_identity(tmp_path):
    base = demo_spec("p", 1)
    key = build_key(base, tmp_path / "pes/p", "baremetal")
    same = [replace(base, pe_name="q", pe_id=2, flags=1, routes=_stage_routes(2))]
    other = [replace(base, stage="s9", model_dir="../../stages/s9/model"),
             replace(base, board="other_board"), replace(base, main_stack_size=4096),
             replace(base, workspace_size=1), replace(base, role="stage"),
             replace(base, outputs=base.outputs[:1])]
    for s in same:
        assert build_key(s, tmp_path / "pes/q", "baremetal") == key
    for s in other:
        assert build_key(s, tmp_path / "pes/p", "baremetal") != key, s
    assert build_key(base, tmp_path / "pes/p", "host") != key
    # the same relative model_dir from another folder is another model
    assert build_key(base, tmp_path / "x/y/p", "baremetal") != key
