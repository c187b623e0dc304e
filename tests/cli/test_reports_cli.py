"""The evidence store from the command line: every run is kept (unless --no-store), listed,
shown, exported byte-exact, its streams retrievable; the chain verifies; a signed report
verifies against the host's public key and a changed byte fails. Each test has its own
BVISOR_HOME, so stores never mix."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

BVISOR = str(Path(sys.executable).parent / "bvisor")


def bvisor(home, *args, extra_env=None):
    env = {**os.environ, "BVISOR_HOME": str(home), **(extra_env or {})}
    return subprocess.run([BVISOR, *args], capture_output=True, stdin=subprocess.DEVNULL, env=env, timeout=60, check=False)


def stored_ids(home) -> list:
    done = bvisor(home, "reports", "list", "--json")
    assert done.returncode == 0, done.stderr.decode()
    return [row["report_id"] for row in json.loads(done.stdout)]


def test_a_run_is_stored_and_listed_shown_exported_and_its_streams_kept(home, tmp_path):
    ran = bvisor(home, "run", "--quiet", "--report", str(tmp_path / "r.json"), "--", "/bin/sh", "-c", "echo out-bytes; echo err-bytes >&2; exit 3")
    assert ran.returncode == 3, ran.stderr.decode()
    [report_id] = stored_ids(home)
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["body_hash"] == report_id
    shown = bvisor(home, "reports", "show", report_id[:8])
    assert shown.returncode == 0 and b"outcome   failed (exit code 3)" in shown.stdout, shown.stdout
    exported = bvisor(home, "reports", "export", report_id, "-o", str(tmp_path / "e.json"))
    assert exported.returncode == 0 and (tmp_path / "e.json").read_bytes() == (tmp_path / "r.json").read_bytes()
    assert bvisor(home, "verify", str(tmp_path / "e.json")).returncode == 0
    assert bvisor(home, "reports", "output", report_id, "--stdout").stdout == b"out-bytes\n"
    assert bvisor(home, "reports", "output", report_id, "--stderr").stdout == b"err-bytes\n"
    listed = bvisor(home, "reports", "list", "--outcome", "completed", "--json")
    assert json.loads(listed.stdout) == []  # the filter really filters
    assert bvisor(home, "reports", "verify").stdout.startswith(b"chain intact: 1 reports")


def test_no_store_keeps_nothing(home):
    ran = bvisor(home, "run", "--quiet", "--no-store", "--", "/bin/true")
    assert ran.returncode == 0, ran.stderr.decode()
    assert not (home / "evidence.sqlite3").exists()


def test_an_unusable_store_is_bad_input_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    not_a_store = tmp_path / "junk.sqlite3"
    not_a_store.write_bytes(b"definitely not sqlite" * 100)
    done = bvisor(tmp_path / "home", "run", "--store", str(not_a_store), "--", "/bin/sh", "-c", f"touch {marker}")
    assert done.returncode == 2 and b"--store" in done.stderr and b"Traceback" not in done.stderr, done.stderr.decode()
    assert not marker.exists()


def test_a_changed_row_breaks_the_chain_and_the_command_names_it(home):
    for _ in range(3):
        assert bvisor(home, "run", "--quiet", "--", "/bin/true").returncode == 0
    db = sqlite3.connect(home / "evidence.sqlite3")
    with db:
        db.execute("UPDATE reports SET outcome = 'completed_ok' WHERE seq = 2")
    db.close()
    done = bvisor(home, "reports", "verify")
    assert done.returncode == 1 and done.stdout.startswith(b"CHAIN BROKEN at row 2"), done.stdout


def test_a_signed_report_verifies_with_the_host_key_and_one_changed_byte_fails(home, tmp_path):
    report = tmp_path / "signed.json"
    assert bvisor(home, "run", "--quiet", "--sign", "--report", str(report), "--", "/bin/true").returncode == 0
    key = tmp_path / "key.pem"
    key.write_bytes(bvisor(home, "key").stdout)
    ok = bvisor(home, "verify", "--key", str(key), str(report))
    assert ok.returncode == 0 and b"signed by" in ok.stdout, ok.stdout
    text = report.read_text()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(text.replace('"outcome":"completed"', '"outcome":"failed"', 1))
    assert tampered.read_text() != text
    assert bvisor(home, "verify", "--key", str(key), str(tampered)).returncode == 1
    other_home = tmp_path / "other"
    other_key = tmp_path / "other.pem"
    other_key.write_bytes(bvisor(other_home, "key").stdout)
    wrong = bvisor(home, "verify", "--key", str(other_key), str(report))
    assert wrong.returncode == 1 and b"TAMPERED: signature" in wrong.stdout, wrong.stdout


def cut_the_last_row_and_reset_the_head(home) -> None:
    """What someone who can write the store but not read the key does to hide the last run."""
    db = sqlite3.connect(home / "evidence.sqlite3")
    with db:
        (last, previous) = db.execute("SELECT seq, chain_hash FROM reports ORDER BY seq DESC LIMIT 2").fetchall()
        for table in ("report_streams", "documents", "reports"):
            db.execute(f"DELETE FROM {table} WHERE seq = ?", (last[0],))
        db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(previous[0], "head_seq"), (previous[1], "head_chain")])
    db.close()


def test_a_signed_store_shows_a_cut_tail_and_an_unsigned_store_says_it_cannot(home, tmp_path):
    assert bvisor(home, "run", "--quiet", "--sign", "--", "/bin/true").returncode == 0
    # Once signed, every append signs the head, --sign or not.
    assert bvisor(home, "run", "--quiet", "--", "/bin/false").returncode == 1
    key_hex = json.loads(bvisor(home, "reports", "show", stored_ids(home)[1], "--json").stdout)["signature"]["public_key"]
    intact = bvisor(home, "reports", "verify")
    assert intact.returncode == 0 and intact.stdout == f"chain intact: 2 reports, head signed by ed25519 {key_hex}\n".encode()
    cut_the_last_row_and_reset_the_head(home)
    broken = bvisor(home, "reports", "verify")
    assert broken.returncode == 1 and broken.stdout.startswith(b"CHAIN BROKEN at the head: head: its signature"), broken.stdout

    # The control: the same cut in an unsigned store goes unseen, and the command says so.
    unsigned = tmp_path / "unsigned"
    for _ in range(2):
        assert bvisor(unsigned, "run", "--quiet", "--", "/bin/true").returncode == 0
    cut_the_last_row_and_reset_the_head(unsigned)
    unseen = bvisor(unsigned, "reports", "verify")
    assert unseen.returncode == 0 and unseen.stdout.startswith(b"chain intact: 1 reports\nunsigned store: rows cut"), unseen.stdout


def test_reports_verify_key_demands_a_head_signed_by_that_key(home, tmp_path):
    assert bvisor(home, "run", "--quiet", "--", "/bin/true").returncode == 0
    key = tmp_path / "key.pem"
    key.write_bytes(bvisor(home, "key").stdout)
    unsigned = bvisor(home, "reports", "verify", "--key", str(key))
    assert unsigned.returncode == 1 and b"not signed, yet key" in unsigned.stdout, unsigned.stdout
    assert bvisor(home, "run", "--quiet", "--sign", "--", "/bin/true").returncode == 0
    assert bvisor(home, "reports", "verify", "--key", str(key)).returncode == 0
    other = tmp_path / "other.pem"
    other.write_bytes(bvisor(tmp_path / "other", "key").stdout)
    wrong = bvisor(home, "reports", "verify", "--key", str(other))
    assert wrong.returncode == 1 and b"not by the trusted key" in wrong.stdout, wrong.stdout
    missing = bvisor(home, "reports", "verify", "--key", str(tmp_path / "absent.pem"))
    assert missing.returncode == 2 and missing.stderr.count(b"\n") == 1 and b"--key" in missing.stderr, missing.stderr


def test_a_signed_store_runs_nothing_under_another_key_and_an_unsigned_store_needs_no_key(home, tmp_path):
    assert bvisor(home, "run", "--quiet", "--", "/bin/true").returncode == 0
    assert not (home / "signing-key.pem").exists()  # an unsigned store never loads or makes a key
    assert bvisor(home, "run", "--quiet", "--sign", "--", "/bin/true").returncode == 0
    assert bvisor(tmp_path / "other", "key").returncode == 0
    (home / "signing-key.pem").unlink()
    (tmp_path / "other" / "signing-key.pem").rename(home / "signing-key.pem")
    marker = tmp_path / "ran"
    done = bvisor(home, "run", "--quiet", "--", "/bin/sh", "-c", f"touch {marker}")
    assert done.returncode == 2 and done.stderr.count(b"\n") == 1 and b"its head is signed by key" in done.stderr, done.stderr
    assert not marker.exists()
    assert len(stored_ids(home)) == 2


def test_a_secret_lease_never_reaches_the_store(home, tmp_path):
    """Attacks the store with a secret lease that the workload really receives (it prints the
    value's sha256, checked here) beside a plain --env value it echoes on stdout and stderr.
    Checks that the raw secret is in none of the store's files (the -wal and -shm kept in
    place by a reader held open, as another bvisor process would), the report JSON, the
    captured streams or the stored ones. The control: the same scan finds the plain value in
    the -wal that holds the run, the report and every stream."""
    secret = "bvisor-store-secret-" + os.urandom(8).hex()
    plain = "bvisor-store-plain-" + os.urandom(8).hex()
    assert bvisor(home, "run", "--quiet", "--", "/bin/true").returncode == 0  # the store exists
    reader = sqlite3.connect(home / "evidence.sqlite3")
    try:
        assert reader.execute("SELECT count(*) FROM reports").fetchone() == (1,)  # attached to the WAL
        done = bvisor(
            home, "run", "--quiet", "--env", f"PLAIN={plain}", "--env-secret", "TOKEN=env:LEASED",
            "--report", str(tmp_path / "r.json"), "--",
            "/bin/sh", "-c", 'printf %s "$TOKEN" | sha256sum; echo "plain $PLAIN"; echo "plain $PLAIN" >&2',
            extra_env={"LEASED": secret},
        )
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == f"{digest}  -\nplain {plain}\n".encode()  # the secret value itself arrived
        assert done.stderr == f"plain {plain}\n".encode()
        report = tmp_path / "r.json"
        report_id = json.loads(report.read_bytes())["body_hash"]
        places = {
            "report": report.read_bytes(),
            "stdout": done.stdout,
            "stderr": done.stderr,
            "stored stdout": bvisor(home, "reports", "output", report_id, "--stdout").stdout,
            "stored stderr": bvisor(home, "reports", "output", report_id, "--stderr").stdout,
        }
        places |= {path.name: path.read_bytes() for path in home.iterdir()}
    finally:
        reader.close()
    assert {"evidence.sqlite3", "evidence.sqlite3-wal", "evidence.sqlite3-shm"} <= places.keys()

    def holding(value: str) -> set:
        return {name for name, data in places.items() if value.encode() in data}

    assert holding(secret) == set()
    assert {"evidence.sqlite3-wal", "report", "stdout", "stderr", "stored stdout", "stored stderr"} <= holding(plain)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["reports", "list", "--limit", "-1"], b"--limit"),
        (["reports", "list", "--limit", "0"], b"--limit"),
        (["reports", "list", "--since", "yesterday"], b"--since"),
        (["reports", "show", "zz"], b"prefix"),
        (["reports", "output", "ffff", "--stdout"], b"no report ffff"),
    ],
)
def test_bad_report_queries_are_one_line_bad_input(home, args, names):
    assert bvisor(home, "run", "--quiet", "--", "/bin/true").returncode == 0
    done = bvisor(home, *args)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and names in done.stderr, done.stderr.decode()
    assert b"Traceback" not in done.stderr
