"""Placing pipeline parts on meshes: the serpentine walk, placements, routes, errors."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from generator.boards.catalog import HOST_ID, load_mesh, load_pe_kind, single_pe_mesh
from generator.errors import DoesNotFitError, UsageError
from generator.partition.placement import (MeshPlacement, StageShards, max_replicas, place, serpentine)


def _shapes():
    """Meshes of many shapes: (chips_x, chips_y, pes_x, pes_y)."""
    base = load_mesh("qemu64")
    return [replace(base, chips_x=cx, chips_y=cy, pes_x=px, pes_y=py, host_links=(0,))
            for cx in (1, 2, 3) for cy in (1, 2, 3) for px in (1, 2, 3, 4) for py in (1, 2, 5)]


def test_serpentine_visits_every_pe_once_one_hop_apart():
    for mesh in _shapes():
        walk = serpentine(mesh)
        assert sorted(walk) == list(range(mesh.num_pes))
        # the walk starts in the host-link chip (at the host link when the snakes allow)
        assert mesh.chip_of(walk[0]) == mesh.chip_of(mesh.host_links[0])
        steps = [mesh.hops(a, b) for a, b in zip(walk, walk[1:])]
        assert all(s == 1 for s in steps), (mesh.chips_x, mesh.chips_y, mesh.pes_x, mesh.pes_y)


@pytest.mark.parametrize("name", ["qemu4", "qemu16", "qemu64", "qemu7296", "spinnaker2_board"])
def test_shipped_meshes_walk_chip_by_chip(name):
    mesh = load_mesh(name)
    walk = serpentine(mesh)
    assert sorted(walk) == list(range(mesh.num_pes))
    assert max(mesh.hops(a, b) for a, b in zip(walk, walk[1:])) == 1
    assert walk[0] == mesh.host_links[0]
    # chip by chip: each chip's PEs form one contiguous run of the walk
    chips = [mesh.chip_of(p) for p in walk]
    changes = sum(a != b for a, b in zip(chips, chips[1:]))
    assert changes == mesh.num_chips - 1


def test_placement_consecutive_parts_are_close_and_routes_are_right():
    mesh = load_mesh("qemu64")
    stages = [("conv", 2), ("pool", 1), ("dense", 3)]
    pl = place(mesh, stages, replicas=3)
    assert pl.num_pes_used == 18 and pl.parts_per_replica == 6
    assert all(h <= 1 for h in pl.consecutive_hops())
    assert len({p.pe_id for p in pl.placements}) == 18
    # parts in order: replica-major, then stage, then shard
    order = [(p.replica, p.stage, p.shard) for p in pl.placements]
    assert order == sorted(order) and [p.part for p in pl.placements] == list(range(18))
    for p in pl.placements:
        assert p.coords == mesh.coords(p.pe_id) and p.chip == mesh.chip_of(p.pe_id)
        assert pl.pe_of(p.stage, p.shard, p.replica) == p.pe_id
        assert p.host_link in mesh.host_links
        if p.stage == 0:
            assert p.inputs_from == (HOST_ID,)
        else:
            assert p.inputs_from == tuple(pl.pe_of(p.stage - 1, s, p.replica)
                                          for s in range(pl.stages[p.stage - 1].shards))
        if p.stage == len(stages) - 1:
            assert p.outputs_to == (HOST_ID,)
        else:
            assert p.outputs_to == tuple(pl.pe_of(p.stage + 1, s, p.replica)
                                         for s in range(pl.stages[p.stage + 1].shards))
        # one route per destination PE, then one to the host
        assert [r.dst for r in p.routes] == [d for d in p.outputs_to if d != HOST_ID] + [HOST_ID]
        for r in p.routes:
            assert r.hops == mesh.hops(p.pe_id, r.via) == len(mesh.route(p.pe_id, r.via))
            assert r.next_hop == (mesh.route(p.pe_id, r.via) or (p.pe_id,))[0]
            assert r.chip_hops == mesh.chip_hops(p.pe_id, r.via)
        host = p.route_to(HOST_ID)
        assert host.via == p.host_link
    # consecutive stages of one replica: at most a few hops between any two of their shards
    for r in range(3):
        for s in range(2):
            for a in range(pl.stages[s].shards):
                for b in range(pl.stages[s + 1].shards):
                    assert mesh.hops(pl.pe_of(s, a, r), pl.pe_of(s + 1, b, r)) <= 4


def test_json_is_deterministic():
    mesh = load_mesh("qemu16")
    a = place(mesh, [StageShards("a", 2), StageShards("b", 1)], replicas=2).to_json()
    b = place(mesh, [("a", 2), ("b", 1)], replicas=2).to_json()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["placements"][0]["pe"] == 0 and a["placements"][0]["routes"][-1]["dst"] == HOST_ID


def test_single_pe():
    mesh = single_pe_mesh(load_pe_kind("qemu_cortex_m3"))
    pl = place(mesh, [1])
    (p,) = pl.placements
    assert (p.pe_id, p.inputs_from, p.outputs_to) == (0, (HOST_ID,), (HOST_ID,))
    assert p.routes[0].hops == 0 and p.routes[0].next_hop == 0 and p.routes[0].via == 0
    with pytest.raises(DoesNotFitError):
        place(mesh, [1, 1])


def test_does_not_fit_gives_the_numbers():
    mesh = load_mesh("qemu16")
    with pytest.raises(DoesNotFitError) as info:
        place(mesh, [("a", 4), ("b", 3)], replicas=3)
    msg = str(info.value)
    assert "21 PEs" in msg and "4 + 3 = 7" in msg and "3 replicas" in msg and "offers 16" in msg
    assert info.value.hint
    with pytest.raises(DoesNotFitError, match=r"offers 5 \(--max-pes 5\)"):
        place(mesh, [3, 3], max_pes=5)
    pl = place(mesh, [3, 3], max_pes=6)
    assert pl.num_pes_used == 6
    assert max_replicas(mesh, [3, 3]) == 2 and max_replicas(mesh, [3, 3], max_pes=11) == 1
    assert max_replicas(mesh, [20]) == 0


@pytest.mark.parametrize("stages,kw", [([], {}), ([0], {}), ([1], {"replicas": 0}),
                                       ([1], {"max_pes": 0})])
def test_bad_requests(stages, kw):
    with pytest.raises(UsageError):
        place(load_mesh("qemu4"), stages, **kw)


def test_full_board_mapping_time():
    mesh = load_mesh("spinnaker2_board")
    t0 = time.perf_counter()
    pl = place(mesh, [("s", 1)] * 8, replicas=mesh.num_pes // 8)
    t1 = time.perf_counter()
    pl2 = place(mesh, [1] * mesh.num_pes)
    t2 = time.perf_counter()
    print(f"\nspinnaker2_board: {pl.num_pes_used} parts (8 stages x {pl.replicas} replicas) "
          f"placed in {t1 - t0:.3f} s; {pl2.num_pes_used} stages x 1 in {t2 - t1:.3f} s")
    assert isinstance(pl, MeshPlacement) and pl.num_pes_used == mesh.num_pes
    assert max(pl.consecutive_hops()) == 1 and max(pl2.consecutive_hops()) == 1
    assert sorted(p.pe_id for p in pl2.placements) == list(range(mesh.num_pes))
