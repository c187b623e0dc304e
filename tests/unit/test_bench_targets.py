"""The benchmark's verdict on each performance target: a ratio on the wrong side of its
limit must read NOT MET, and a target whose peer is absent must say so rather than pass."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench


def rows(medians: dict) -> list:
    return [(name, {"median_ms": ms}) for name, ms in medians.items()]


def verdicts(warm_ms: float, cli_ms: float, pair_rate: float, overhead: float, peers: bool = True) -> dict:
    """``{first two words of the target: (measured, met)}`` with the peers at fixed figures,
    or (``peers=False``) with bwrap and firejail not installed."""
    latency = rows({**({"bwrap": 4.0} if peers else {}), "bvisor-warm": warm_ms, "python-floor": 3.0})
    cli = rows({**({"firejail": 40.0} if peers else {}), "python+msgspec": 70.0, "bvisor-cli stored": cli_ms})
    host = rows({"plan": 0.3, "seal": 0.05})
    rates = {"bvisor-warm x2": pair_rate, **({"bwrap x1": 200.0} if peers else {})}
    result = bench.targets(latency, cli, host, rates, {"loop wall time": overhead, "loop CPU time": overhead - 1})
    return {" ".join(target.split(" ")[:2]): (measured, met) for target, measured, met in result}


@pytest.mark.parametrize(
    "warm_ms, cli_ms, pair_rate, overhead, met",
    [
        (4.0, 80.0, 300.0, 2.0, True),  # every figure exactly at its limit
        (4.1, 81.0, 299.0, 2.1, False),  # every figure just past it
    ],
)
def test_each_target_is_judged_against_its_limit(warm_ms, cli_ms, pair_rate, overhead, met):
    judged = verdicts(warm_ms, cli_ms, pair_rate, overhead)
    assert judged["warm API"][1] is met
    assert judged["2 concurrent"][1] is met
    assert judged["CLI cold"][1] is met
    assert judged["CPU-bound overhead"][1] is met
    assert judged["plan +"][1] is True  # 0.35 ms


def test_the_floor_is_shown_beside_the_ratio_it_bounds():
    judged = verdicts(12.0, 200.0, 100.0, 0.0)
    assert judged["warm API"][0] == "3.00x (python-floor alone 0.75x)"
    assert judged["CLI cold"][0] == "5.00x (python+msgspec alone 1.75x)"


def test_a_target_whose_peer_is_absent_is_not_measured_rather_than_met():
    judged = verdicts(1.0, 10.0, 900.0, 0.0, peers=False)
    for target in ("warm API", "2 concurrent", "CLI cold"):
        measured, met = judged[target]
        assert met is None and "not measured" in measured, target
    assert judged["CPU-bound overhead"][1] is True  # needs no peer
