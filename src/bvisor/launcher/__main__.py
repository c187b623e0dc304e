"""``bvisor-linux-launcher`` / ``python -m bvisor.launcher``: an internal protocol endpoint.

The host passes the plan and control fds through the environment; ``--probe`` prints what
this launcher identity can install; ``--serve`` is the warm launcher (``server.py``), which
takes the same plans over a socket. Nothing here imports the host-side contract.
"""

import sys


def main() -> None:
    if sys.argv[1:] == ["--probe"]:
        from bvisor.launcher.probe import main as entry
    elif sys.argv[1:] == ["--serve"]:
        from bvisor.launcher.server import main as entry
    else:
        from bvisor.launcher.coordinator import main as entry
    entry()


if __name__ == "__main__":
    main()
