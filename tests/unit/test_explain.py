"""A budget figure in words: its unit, never an exponent (a year of wall time is 31536000s,
a petabyte of memory 1P), and an unobserved one says so."""

import pytest

from bvisor.explain import amount


@pytest.mark.parametrize(
    ("dimension", "value", "shown"),
    [
        ("wall", 31_536_000_000_000, "31536000s"),
        ("wall", 500_000, "0.5s"),
        ("cpu", 23_665, "0.023665s"),
        ("cpu", 0, "0s"),
        ("resident_memory", 1 << 50, "1P"),
        ("resident_memory", 32 << 20, "32M"),
        ("storage", 1536, "1.5K"),
        ("network", 0, "0"),
        ("process_count", 64, "64"),
        ("handle_count", None, "unobserved"),
    ],
)
def test_amount_names_the_unit_and_never_writes_an_exponent(dimension, value, shown):
    assert amount(dimension, value) == shown
