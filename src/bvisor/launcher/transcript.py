"""The control channel: one line per state, ``# `` notes attesting mechanisms."""

import os


class Transcript:
    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def _line(self, text: str) -> None:
        data = (text.replace("\n", " ") + "\n").encode("utf-8", "backslashreplace")
        while data:
            data = data[os.write(self.fd, data):]

    def state(self, name: str) -> None:
        self._line(name)

    def note(self, text: str) -> None:
        self._line("# " + text)
