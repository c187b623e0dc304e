"""Store upkeep from the command line: `reports prune --keep N | --older-than DAYS` drops the
oldest runs and `reports verify` stays green, yet still finds a changed kept row and a moved
checkpoint; prune never makes a store and names a bad flag; `reports show` counts and hashes
a stream as the sealed report does. Each test has its own BVISOR_HOME."""

import json
import re
import sqlite3
import time

import blake3
import pytest
from test_reports_cli import bvisor, stored_ids


def runs(home, count: int, *flags: str) -> None:
    for n in range(count):
        done = bvisor(home, "run", "--quiet", *flags, "--", "/bin/sh", "-c", f"echo run {n}")
        assert done.returncode == 0, done.stderr.decode()


def prune(home, *args):
    done = bvisor(home, "reports", "prune", *args)
    assert done.returncode == 0, done.stderr.decode()
    match = re.fullmatch(rb"pruned (\d+) reports, kept (\d+), freed (-?\d+) bytes\n", done.stdout)
    assert match, done.stdout
    return tuple(int(n) for n in match.groups())


def sql(home, *statements) -> None:
    db = sqlite3.connect(home / "evidence.sqlite3")
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_prune_keep_keeps_verify_green_in_a_signed_store(home):
    runs(home, 1, "--sign")
    runs(home, 4)  # once signed, every append signs the head
    ids = stored_ids(home)
    size = (home / "evidence.sqlite3").stat().st_size
    pruned, kept, freed = prune(home, "--keep", "2")
    assert (pruned, kept) == (3, 2)
    assert freed > 0 and (home / "evidence.sqlite3").stat().st_size == size - freed
    assert stored_ids(home) == ids[:2]
    verified = bvisor(home, "reports", "verify")
    assert verified.returncode == 0, verified.stdout
    assert re.fullmatch(
        rb"chain intact: 2 reports \(3 pruned before them\), head and checkpoint signed by ed25519 [0-9a-f]{64}\n",
        verified.stdout,
    ), verified.stdout
    assert bvisor(home, "reports", "output", ids[0], "--stdout").stdout == b"run 3\n"


def test_prune_older_than_drops_only_the_old_runs(home):
    runs(home, 5)
    ids = stored_ids(home)
    forty_days_ago = time.time_ns() - 40 * 86_400 * 10**9
    sql(home, f"UPDATE reports SET stored_unix_ns = {forty_days_ago} WHERE seq <= 2")
    assert prune(home, "--older-than", "30")[:2] == (2, 3)
    assert stored_ids(home) == ids[:3]
    verified = bvisor(home, "reports", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith(b"chain intact: 3 reports (2 pruned before them)\n")
    assert prune(home, "--older-than", "30")[:2] == (0, 3)  # nothing older is left


def test_tampering_after_a_prune_is_still_found(home):
    runs(home, 1, "--sign")
    runs(home, 5)
    prune(home, "--keep", "4")
    sql(home, "UPDATE reports SET outcome = 'failed' WHERE seq = 4")
    changed = bvisor(home, "reports", "verify")
    assert changed.returncode == 1 and changed.stdout.startswith(b"CHAIN BROKEN at row 4: seq 4: its index outcome"), changed.stdout
    sql(home, "UPDATE reports SET outcome = 'completed' WHERE seq = 4")
    assert bvisor(home, "reports", "verify").returncode == 0  # the control: put back, it verifies

    # Hide the oldest kept run as if it had been pruned: rows 4.. still chain from row 3.
    sql(
        home,
        "UPDATE meta SET value = 3 WHERE key = 'checkpoint_seq'",
        "UPDATE meta SET value = (SELECT chain_hash FROM reports WHERE seq = 3) WHERE key = 'checkpoint_chain'",
        *(f"DELETE FROM {table} WHERE seq = 3" for table in ("report_streams", "documents", "reports")),
    )
    moved = bvisor(home, "reports", "verify")
    assert moved.returncode == 1 and moved.stdout.startswith(b"CHAIN BROKEN at the checkpoint: checkpoint: its signature"), moved.stdout


def test_prune_refuses_a_broken_chain(home):
    runs(home, 3)
    sql(home, "UPDATE reports SET exe = '/bin/other' WHERE seq = 1")
    done = bvisor(home, "reports", "prune", "--keep", "1")
    assert done.returncode == 2 and b"does not verify" in done.stderr and b"nothing pruned" in done.stderr, done.stderr
    assert len(stored_ids(home)) == 3


def test_prune_on_a_missing_store_is_an_error_and_makes_nothing(home, tmp_path):
    done = bvisor(home, "reports", "prune", "--keep", "1")
    assert done.returncode == 2 and b"no evidence store" in done.stderr, done.stderr
    elsewhere = tmp_path / "typo" / "evidence.sqlite3"
    done = bvisor(home, "reports", "prune", "--keep", "1", "--store", str(elsewhere))
    assert done.returncode == 2 and str(elsewhere).encode() in done.stderr, done.stderr
    assert not home.exists() and not elsewhere.parent.exists()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--keep", "-1"], b"--keep"),
        (["--keep", "two"], b"--keep"),
        (["--older-than", "1.5"], b"--older-than"),
        (["--older-than", ""], b"--older-than"),
        (["--keep", "1", "--older-than", "1"], b"--older-than"),
        ([], b"--keep --older-than"),
    ],
)
def test_bad_prune_flags_are_one_line_bad_input(home, args, names):
    runs(home, 2)
    done = bvisor(home, "reports", "prune", *args)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and names in done.stderr, done.stderr.decode()
    assert len(stored_ids(home)) == 2


def shown_streams(home, report_id: str) -> str:
    shown = bvisor(home, "reports", "show", report_id)
    assert shown.returncode == 0, shown.stderr.decode()
    return shown.stdout.decode().split("\nstream    ", 1)[1]


def test_show_counts_and_hashes_a_stream_as_the_sealed_report_does(home, tmp_path):
    report = tmp_path / "r.json"
    done = bvisor(
        home, "run", "--quiet", "--report", str(report), "--", "/bin/sh", "-c", "head -c 17000000 /dev/zero; printf err >&2"
    )
    assert done.returncode == 0, done.stderr.decode()
    sealed = {c["stream"]: c for c in json.loads(report.read_bytes())["captured"]}
    report_id = json.loads(report.read_bytes())["body_hash"]
    kept_stdout = bvisor(home, "reports", "output", report_id, "--stdout").stdout
    assert sealed["stdout"]["bytes"] == 17_000_000 and len(kept_stdout) == 16 * 1024 * 1024
    assert shown_streams(home, report_id) == (
        f"stdout: kept {len(kept_stdout)} of 17000000 bytes (truncated)\n"
        f"          blake3 of all 17000000 bytes (sealed in the report): {sealed['stdout']['blake3']}\n"
        f"          blake3 of the {len(kept_stdout)} kept bytes (the store's content address): "
        f"{blake3.blake3(kept_stdout).hexdigest()}\n"
        f"stream    stderr: kept 3 of 3 bytes\n"
        f"          blake3 of all 3 bytes (sealed in the report): {sealed['stderr']['blake3']}\n"
    )
    assert sealed["stderr"]["blake3"] == blake3.blake3(b"err").hexdigest()
