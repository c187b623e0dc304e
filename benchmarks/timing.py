"""Timing one call, shared by ``bench.py`` and ``python_floor.py`` (which must stay a small
process image, so it imports nothing heavier than this)."""

import time


def timed(once, runs: int, warmup: int) -> list:
    """Milliseconds per call of ``once`` over ``runs`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        once()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        once()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples
