"""``pemesh build OUT [--backend auto|west|baremetal|host] [-j N]``: every PE image of OUT/."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from generator.firmware.build import choose_backend
from generator.firmware.images import BuildProgress, ImagePlan, build_mesh_report
from generator.manifest import read_manifest

#: at most this many PEs are listed one by one (else only the built images)
LIST_PES = 16


class PlainProgress(BuildProgress):
    """Progress as plain lines on stderr (not a terminal): one per image, ~10 for stamping."""

    def begin(self, images: int, stamps: int) -> None:
        self.images, self.stamps, self.n_built, self.n_stamped = images, stamps, 0, 0
        print(f"building {images} image(s), stamping {stamps} PE(s)", file=sys.stderr)

    def built(self, plan: ImagePlan, seconds: float) -> None:
        self.n_built += 1
        print(f"[{self.n_built}/{self.images}] built {plan.name} ({len(plan.pes)} PE(s)) in "
              f"{seconds:.1f} s", file=sys.stderr)

    def stamped(self, pe: str) -> None:
        self.n_stamped += 1
        step = max(1, self.stamps // 10)
        if self.n_stamped % step == 0 or self.n_stamped == self.stamps:
            print(f"stamped {self.n_stamped}/{self.stamps}", file=sys.stderr)


class RichProgress(BuildProgress):
    """Progress bars (rich) on a terminal."""

    def begin(self, images: int, stamps: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
        self.bar.start()
        self.t_build = self.bar.add_task("build", total=images)
        self.t_stamp = self.bar.add_task("stamp", total=stamps)

    def built(self, plan: ImagePlan, seconds: float) -> None:
        self.bar.advance(self.t_build)

    def stamped(self, pe: str) -> None:
        self.bar.advance(self.t_stamp)

    def end(self) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()


def build_command(args: argparse.Namespace) -> int:
    """Build every image of OUT/; say which backend ran and why."""
    out = Path(args.out)
    manifest = read_manifest(out)
    backend, reason = choose_backend(args.backend, manifest.board or "qemu_cortex_m3")
    print(f"backend: {backend} ({reason})")
    progress = RichProgress() if sys.stderr.isatty() else PlainProgress()
    report = build_mesh_report(out, backend, jobs=args.jobs, progress=progress)
    shown = [img for img in report.images.values() if img.how == "built"]
    if len(report.images) <= LIST_PES:
        shown = list(report.images.values())
    for img in shown:
        r = img.result
        how = "" if img.how == "built" else f"  (stamped from {img.source})"
        print(f"{img.pe}: {os.path.relpath(r.image, out.resolve())}  "
              f"flash {r.sizes.flash} B  ram {r.sizes.ram} B  "
              f"(text {r.sizes.text}, data {r.sizes.data}, bss {r.sizes.bss})  "
              f"sha256 {img.sha256[:12]}{how}")
    print(f"{report.built} image(s) built, {report.stamped} stamped "
          f"({len(report.images)} PEs; build {report.build_seconds:.1f} s, "
          f"stamp {report.stamp_seconds:.1f} s)")
    return 0
