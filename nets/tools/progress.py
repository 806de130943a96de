"""A dependency-free progress bar for long work (compiling, profiling, classifying)."""

import sys
import time


class Progress:
    """A one-line progress bar on stderr: drawn only when ``enabled`` and the stream is a terminal."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label, self.n = total, label, 0
        self.stream = stream or sys.stderr
        self.live = enabled and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, note: str = "", n: int = 1):
        self.n += n
        if self.live:
            width = 30
            done = int(width * min(self.n, self.total) / max(self.total, 1))
            self.stream.write(f"\r{self.label} [{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                              f"{time.perf_counter() - self.t0:5.1f}s {note[:28]:<28}")
            self.stream.flush()

    def close(self):
        if self.live:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
