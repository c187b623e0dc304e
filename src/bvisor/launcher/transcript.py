"""The control channel: one line per state, ``# `` notes attesting mechanisms, each line as
``wire.frame.control_line`` writes it."""

import os

from bvisor.wire.frame import control_line


class Transcript:
    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def _line(self, text: str) -> None:
        data = control_line(text)
        while data:
            data = data[os.write(self.fd, data):]

    def state(self, name: str) -> None:
        self._line(name)

    def note(self, text: str) -> None:
        self._line("# " + text)
