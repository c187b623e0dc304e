"""A report's ending in words, for the CLI's summary and the API's errors: why a run has no
exit status, and which budget ended it (with its limit and what was observed). Pure
functions of the report."""

# Facts that describe a run rather than explain how it ended.
_ROUTINE_FACTS = frozenset(
    {
        "launcher_terminal",
        "stream_captured",
        "filesystem_confined",
        "filesystem_unconfined",
        "filesystem_root_resolved",
        "mount_planned",
        "mount_made",
        "landlock_installed",
        "seccomp_rule",
        "cgroup_leaf",
        "exe_identity",
        "stdin",
        "launch_timeline",
    }
)
_LAUNCHER_VERDICTS = ("fault:", "refusal=", "child_failed")


def _is_reason(fact) -> bool:
    if fact.kind == "launcher_note":
        return fact.detail.startswith(_LAUNCHER_VERDICTS)
    return fact.kind not in _ROUTINE_FACTS and not fact.kind.endswith("_lowered")  # what was planned is no reason


def why_no_exit(report) -> str:
    """Why a run has no exit status, in one line: its outcome and the first fact that
    explains it."""
    # The judge's own words first (they name the field to fix), then the launcher's.
    reasons = sorted((f for f in report.body.observed if _is_reason(f)), key=lambda f: f.kind == "launcher_note")
    return report.body.outcome.value + (f": {reasons[0].kind}: {reasons[0].detail}" if reasons else "")


_BYTES = ("resident_memory", "storage", "network")
_MICROSECONDS = ("wall", "cpu")


def amount(dimension: str, value) -> str:
    """A budget figure in its unit: bytes 1024-based, wall and cpu in seconds, else a count."""
    if value is None:
        return "unobserved"
    if dimension in _MICROSECONDS:
        return f"{value / 1e6:.6f}".rstrip("0").rstrip(".") + "s"  # never an exponent: 31536000s, 0.5s
    if dimension in _BYTES:
        for unit, size in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if value >= size:
                return f"{value / size:.4g}{unit}"
    return str(value)


def budget_findings(body) -> str:
    """The budgets that were reached or exceeded, with limit and observed: why a run was killed."""
    hit = [b for b in body.budget if b.finding.value not in ("within_limit", "observation_unavailable")]
    return "; ".join(
        f"{b.dimension.value} {b.finding.value} (limit {amount(b.dimension.value, b.limit)}, observed {amount(b.dimension.value, b.observed)})"
        for b in hit
    )
