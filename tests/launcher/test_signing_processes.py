"""The signing key with real processes: processes racing to create the host key all end up
with one, and importing bvisor (its report types and the signing module) does not import
cryptography until a key is loaded, each seen from a fresh interpreter."""

import os
import subprocess
import sys

from bvisor.evidence.signing import HostSigningKey


def test_racing_processes_all_end_up_with_one_key(tmp_path):
    home = tmp_path / "home"
    code = (
        "import sys; from pathlib import Path; from bvisor.evidence.signing import HostSigningKey; "
        "print(HostSigningKey.load_or_create(Path(sys.argv[1])).public_key_hex())"
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(keys) == 1 and keys == {HostSigningKey.load_or_create(home).public_key_hex()}
    assert os.listdir(home) == ["signing-key.pem"]


# --- import cost --------------------------------------------------------------------------


def test_importing_bvisor_does_not_import_cryptography():
    code = (
        "import sys, bvisor, bvisor.contract, bvisor.evidence.signing; bvisor.BoundaryReport; "
        "print('cryptography' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr


def test_loading_a_key_imports_cryptography(tmp_path):
    """The import check above is not vacuous: the same probe sees signing import it."""
    code = (
        "import sys; from pathlib import Path; from bvisor.evidence.signing import HostSigningKey; "
        "HostSigningKey.load_or_create(Path(sys.argv[1])); print('cryptography' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True", result.stderr
