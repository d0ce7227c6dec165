"""The pure pieces of scripts/bench_scaleout.py: the probes it publishes during a hand-over and what it calls
sustained (the figures in docs/BENCHMARKS.md "Scale-out over Kafka" rest on both)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from simulators.district import build_district
from whistle.bus import partition_for

ROOT = Path(__file__).resolve().parents[1]


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scaleout", ROOT / "scripts" / "bench_scaleout.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_scaleout", mod)
    spec.loader.exec_module(mod)
    return mod


def test_one_smoke_probe_per_priority_partition_each_in_a_building_of_its_own() -> None:
    for households, covered in ((3000, 8), (600, 7)):  # the small street's buildings fall in 7 of 8 partitions
        registry = build_district(households, seed=1).registry
        probes = bench().probe_detectors(registry, 8)
        smoke = {d["id"]: d for d in registry["devices"] if d["type"] == "smoke"}
        assert all(smoke[device]["building_id"] == building for device, building in probes)
        assert len({b for _, b in probes}) == len(probes) == covered
        partitions = {partition_for(b.encode(), 8) for _, b in probes}
        assert partitions == {partition_for(d["building_id"].encode(), 8) for d in smoke.values()}


def step(**kw: Any) -> dict[str, Any]:
    base = {"target_msg_per_s": 8000.0, "offered_msg_per_s": 8000, "stored_msg_per_s": 7900}
    return {**base, "lag_zero_after_publish_s": 4.0, **kw}


def test_sustained_means_stored_at_the_offered_rate_and_the_lag_drained_soon_after() -> None:
    sustained = bench().sustained
    assert sustained(step(), keepup=0.97, lag_zero_s=10)
    assert not sustained(step(stored_msg_per_s=7581), keepup=0.97, lag_zero_s=10)  # 95 %: fell behind
    assert not sustained(step(lag_zero_after_publish_s=12.1), keepup=0.97, lag_zero_s=10)  # the backlog lingered
    assert not sustained(step(lag_zero_after_publish_s=None), keepup=0.97, lag_zero_s=10)  # never drained
    assert not sustained(step(target_msg_per_s=0.0), keepup=0.97, lag_zero_s=10)  # flat out is a ceiling
