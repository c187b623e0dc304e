"""``bvisor-linux-launcher`` / ``python -m bvisor.launcher``: an internal protocol endpoint.

The host passes the plan and control fds through the environment; ``--probe`` prints what
this launcher identity can install. Nothing here imports the host-side contract.
"""

import sys


def main() -> None:
    if sys.argv[1:] == ["--probe"]:
        from bvisor.launcher.probe import main as entry
    else:
        from bvisor.launcher.coordinator import main as entry
    entry()


if __name__ == "__main__":
    main()
