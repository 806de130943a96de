"""A dependency-free progress bar for long work (compiling, profiling, classifying)."""

import sys
import time


def clock(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss past an hour)."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class Progress:
    """A one-line progress bar on stderr: drawn only when ``enabled`` and the stream is a terminal.

    With ``unit`` (e.g. "images") the line also shows the rate in units/s and the time left, from the
    work done since ``start_rate()`` (or since the bar was made): work that was already done before
    (a resumed run) or a slow first step (kernel compilation) does not distort the estimate."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True, unit: str | None = None):
        self.total, self.label, self.n = total, label, 0
        self.unit = unit
        self.stream = stream or sys.stderr
        self.live = enabled and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.rate_t0, self.rate_n0 = self.t0, 0

    def start_rate(self):
        """Measure the rate from now on (after a warm-up step)."""
        self.rate_t0, self.rate_n0 = time.perf_counter(), self.n

    def rate(self) -> float:
        """Units per second since ``start_rate`` (0 before any unit is done)."""
        dt = time.perf_counter() - self.rate_t0
        return (self.n - self.rate_n0) / dt if dt > 0 and self.n > self.rate_n0 else 0.0

    def update(self, note: str = "", n: int = 1):
        self.n += n
        if self.live:
            width = 30
            done = int(width * min(self.n, self.total) / max(self.total, 1))
            elapsed = time.perf_counter() - self.t0
            if self.unit:
                rate = self.rate()
                eta = clock((self.total - self.n) / rate) if rate > 0 else "?"
                tail = f"{self.unit} {rate:7.1f}/s  {clock(elapsed)} elapsed, ETA {eta}"
            else:
                tail = f"{elapsed:5.1f}s"
            self.stream.write(f"\r{self.label} [{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                              f"{tail} {note[:28]:<28}")
            self.stream.flush()

    def close(self):
        if self.live:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()
