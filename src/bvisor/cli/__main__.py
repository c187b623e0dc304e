"""``python -m bvisor.cli``: the ``bvisor`` program."""

import sys

from bvisor.cli import command

sys.exit(command())
