"""The arena planner: no overlap while live, arena ≥ lower bound, tight on chains."""

import random

import pytest

from generator.aot.planner import Buffer, MemoryPlan, Placement, check_plan, lower_bound, plan_memory


def test_chain_reuses_memory():
    # a chain: each tensor lives two steps (written, then read by the next op)
    bufs = [Buffer(f"t{i}", 1000 - 100 * (i % 3), i, i + 1) for i in range(8)]
    plan = plan_memory(bufs)
    assert plan.arena_size >= plan.lower_bound
    assert plan.arena_size <= 1.05 * plan.lower_bound
    # far less than the sum of sizes
    assert plan.arena_size < sum(b.size for b in bufs) / 2


def test_offsets_are_aligned_and_disjoint_when_live():
    bufs = [Buffer("a", 10, 0, 2), Buffer("b", 33, 1, 3), Buffer("c", 7, 2, 2), Buffer("d", 50, 3, 4)]
    plan = plan_memory(bufs, alignment=16)
    check_plan(plan)
    for p in plan.placements:
        assert p.offset % 16 == 0


def test_checker_catches_overlap():
    a, b = Buffer("a", 64, 0, 1), Buffer("b", 64, 1, 2)
    bad = MemoryPlan((Placement(a, 0), Placement(b, 32)), 128, 128, 16, "hand-made")
    with pytest.raises(AssertionError, match="overlaps"):
        check_plan(bad)
    ok = MemoryPlan((Placement(a, 0), Placement(b, 64)), 128, 128, 16, "hand-made")
    check_plan(ok)


def test_checker_catches_misalignment():
    a = Buffer("a", 64, 0, 1)
    with pytest.raises(AssertionError, match="aligned"):
        check_plan(MemoryPlan((Placement(a, 8),), 80, 64, 16, "hand-made"))


def test_lower_bound_is_max_live():
    bufs = [Buffer("a", 16, 0, 1), Buffer("b", 32, 1, 2), Buffer("c", 48, 2, 3)]
    assert lower_bound(bufs) == 80  # step 2: b + c


@pytest.mark.parametrize("seed", range(40))
def test_random_plans_are_valid(seed):
    rng = random.Random(seed)
    bufs = []
    for i in range(rng.randint(1, 25)):
        first = rng.randint(0, 20)
        bufs.append(Buffer(f"b{i}", rng.randint(1, 5000), first, first + rng.randint(0, 5)))
    plan = plan_memory(bufs)
    check_plan(plan)
    assert plan.arena_size >= plan.lower_bound
    assert {p.buffer.name for p in plan.placements} == {b.name for b in bufs}


def test_deterministic():
    bufs = [Buffer(f"b{i}", (i * 37) % 200 + 1, i % 5, i % 5 + 2) for i in range(20)]
    assert plan_memory(bufs) == plan_memory(list(reversed(bufs)))


def test_empty():
    plan = plan_memory([])
    assert plan.arena_size == 0 and plan.lower_bound == 0
