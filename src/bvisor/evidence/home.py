"""Where the evidence store and the signing key live (imported by the host's lowering,
which masks it in every run's view: it stays free of the store's imports)."""

import functools
import os


@functools.lru_cache(maxsize=4)
def _platform_home() -> str:
    import platformdirs  # only when BVISOR_HOME does not say; it is not free to import

    return str(platformdirs.user_data_path("bvisor"))


def evidence_home() -> str:
    """``$BVISOR_HOME``, else the user data directory."""
    return os.path.abspath(os.environ.get("BVISOR_HOME") or _platform_home())
