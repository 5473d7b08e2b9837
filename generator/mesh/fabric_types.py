"""The fabric's value types: fault injection settings and counters (CONTRACTS §6 "Fabric").

Kept apart from :mod:`generator.mesh.fabric` so that a sharded fabric (:mod:`generator.mesh.shard`)
can merge the counters of every shard without importing the routing code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Faults:
    """Faults injected into frames the fabric writes into PEs.

    ``pes``: the PE links to disturb (None = all). Per frame written: with probability
    ``garbage_rate`` 1..``garbage_max`` garbage bytes go before it; with probability
    ``bitflip_rate`` a TENSOR frame is written with one bit flipped (after the sync); with
    probability ``drop_rate`` a frame is not written at all (and a non-TENSOR frame a PE sent is
    not routed). ``max_faults`` caps the total (None = no cap).
    """

    seed: int = 0
    pes: tuple[int, ...] | None = None
    garbage_rate: float = 0.0
    garbage_max: int = 16
    bitflip_rate: float = 0.0
    drop_rate: float = 0.0
    #: frame types dropped on purpose, every one of them (tests: e.g. ``(READY,)``), at most
    #: ``max_faults`` times
    drop_types: tuple[int, ...] = ()
    max_faults: int | None = None

    def applies_to(self, pe: int) -> bool:
        return self.pes is None or pe in self.pes


@dataclass(frozen=True)
class LinkTraffic:
    """Frames and bytes that crossed one directed link."""

    frames: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"frames": self.frames, "bytes": self.bytes}


@dataclass(frozen=True)
class FabricStats:
    """A snapshot of the fabric's counters.

    ``mesh_links[(a, b)]``: routed frames on the mesh link from PE ``a`` to its neighbour ``b``
    (a frame of h hops counts on h links). ``from_pe``/``to_pe``: bytes on each PE's own link 1,
    PE→fabric and fabric→PE (with retransmissions and injected faults).
    """

    routed_frames: int
    routed_bytes: int
    hops: int
    mesh_links: dict[tuple[int, int], LinkTraffic]
    from_pe: dict[int, LinkTraffic]
    to_pe: dict[int, LinkTraffic]
    retransmissions: int
    retransmissions_to: dict[int, int]
    acks: int
    bad_frames: int
    skipped_bytes: int
    undeliverable: int
    injected_garbage_bytes: int
    injected_bitflips: int
    injected_drops: int = 0

    @classmethod
    def empty(cls) -> "FabricStats":
        """The counters of a run without a fabric (a single PE: nothing crosses the mesh)."""
        return cls(0, 0, 0, {}, {}, {}, 0, {}, 0, 0, 0, 0, 0, 0)

    def to_json(self) -> dict[str, object]:
        return {
            "routed_frames": self.routed_frames, "routed_bytes": self.routed_bytes,
            "hops": self.hops, "retransmissions": self.retransmissions,
            "retransmissions_to": {str(k): v for k, v in sorted(self.retransmissions_to.items())},
            "acks": self.acks, "bad_frames": self.bad_frames,
            "skipped_bytes": self.skipped_bytes, "undeliverable": self.undeliverable,
            "injected_garbage_bytes": self.injected_garbage_bytes,
            "injected_bitflips": self.injected_bitflips,
            "injected_drops": self.injected_drops,
            "mesh_links": {f"{a}->{b}": t.to_json() for (a, b), t in sorted(self.mesh_links.items())},
            "from_pe": {str(k): t.to_json() for k, t in sorted(self.from_pe.items())},
            "to_pe": {str(k): t.to_json() for k, t in sorted(self.to_pe.items())},
        }

    @classmethod
    def merge(cls, parts: Iterable["FabricStats"]) -> "FabricStats":
        """The counters of a fabric split into shards, as one fabric would have counted them:
        scalars add up, per-link and per-PE counters are disjoint between shards (a link is
        counted by the shard of the PE it leaves, a PE's own link by the PE's shard)."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        scalars = {k: sum(getattr(p, k) for p in parts) for k in (
            "routed_frames", "routed_bytes", "hops", "retransmissions", "acks", "bad_frames",
            "skipped_bytes", "undeliverable", "injected_garbage_bytes", "injected_bitflips",
            "injected_drops")}
        maps = {}
        for k in ("mesh_links", "from_pe", "to_pe", "retransmissions_to"):
            m: dict = {}
            for p in parts:
                for key, v in getattr(p, k).items():
                    if key in m:            # never for disjoint shards; add up to be safe
                        v = (LinkTraffic(m[key].frames + v.frames, m[key].bytes + v.bytes)
                             if isinstance(v, LinkTraffic) else m[key] + v)
                    m[key] = v
            maps[k] = m
        return cls(**scalars, **maps)


__all__ = ["Faults", "FabricStats", "LinkTraffic"]
