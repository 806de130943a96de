"""Runners handed out one call at a time, with bounded memory.

A ``Slot`` is an arena (planned for some batch M) with its own kernel workspace and, per batch
N <= M, a runner bound to it. A call leases an idle slot that holds its batch (the smallest such),
or makes one planned for the next power of two; when the slots' bytes (arenas + scratch) pass the
budget, the least recently used idle slots are dropped. At most ``max_concurrency`` calls run at
once; further callers wait. Two callers never share a slot, so concurrent calls cannot corrupt each
other, and a model that sees every batch size from 1 to 64 keeps a handful of arenas, not 64.
"""

from __future__ import annotations

import contextlib
import itertools
import threading

from nets.errors import InputError, ModelError


def planned_batch(batch: int) -> int:
    """The batch an arena for ``batch`` is planned for: the next power of two (1, 2, 4, 8, ...)."""
    return 1 << (int(batch) - 1).bit_length()


class Slot:
    def __init__(self, arena, workspace, make_runner):
        self.arena, self.workspace = arena, workspace
        self._make_runner = make_runner
        self.runners: dict[int, object] = {}
        self.busy = False
        self.last_used = 0

    @property
    def capacity(self) -> int:
        return self.arena.capacity

    @property
    def nbytes(self) -> int:
        return self.arena.nbytes + self.workspace.nbytes

    def runner(self, batch: int):
        r = self.runners.get(batch)
        if r is None:
            r = self.runners[batch] = self._make_runner(batch, self.arena, self.workspace)
        return r


class RunnerPool:
    def __init__(self, make_arena, make_workspace, make_runner, budget_bytes: int, max_concurrency: int):
        if max_concurrency < 1:
            raise ModelError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._make_arena, self._make_workspace, self._make_runner = make_arena, make_workspace, make_runner
        self.budget_bytes = int(budget_bytes)
        self.max_concurrency = int(max_concurrency)
        self.slots: list[Slot] = []
        self._cond = threading.Condition()
        self._busy = 0
        self._clock = itertools.count(1)

    @contextlib.contextmanager
    def lease(self, batch: int):
        """A runner for ``batch`` that no other call uses until the block ends."""
        with self._cond:
            while self._busy >= self.max_concurrency:
                self._cond.wait()
            idle = [s for s in self.slots if not s.busy and s.capacity >= batch]
            slot = min(idle, key=lambda s: (s.capacity, -s.last_used)) if idle else None
            self._busy += 1
            if slot is not None:
                slot.busy = True
        try:
            if slot is None:         # made outside the lock: planning and allocating take a while
                try:
                    arena = self._make_arena(planned_batch(batch))
                except InputError:   # the rounded-up batch does not fit: the batch itself may
                    arena = self._make_arena(batch)
                slot = Slot(arena, self._make_workspace(), self._make_runner)
                slot.busy = True
                with self._cond:
                    self.slots.append(slot)
            runner = slot.runner(batch)
        except BaseException:
            with self._cond:
                self._busy -= 1
                if slot is not None:
                    slot.busy = False
                self._cond.notify()
            raise
        try:
            yield runner
        finally:
            with self._cond:
                slot.busy = False
                slot.last_used = next(self._clock)
                self._busy -= 1
                self._trim()
                self._cond.notify()

    def _trim(self):
        """Drop least recently used idle slots while the total passes the budget (the most recent
        slot always stays, so a lone caller never re-plans on every call)."""
        total = sum(s.nbytes for s in self.slots)
        for s in sorted((s for s in self.slots if not s.busy), key=lambda s: s.last_used)[:-1]:
            if total <= self.budget_bytes:
                break
            self.slots.remove(s)
            total -= s.nbytes

    def clear(self):
        """Drop every idle slot (their arenas and scratch are freed once nothing else holds them)."""
        with self._cond:
            self.slots = [s for s in self.slots if s.busy]

    def stats(self) -> dict:
        with self._cond:
            return dict(slots=[dict(capacity=s.capacity, arena_bytes=s.arena.nbytes, scratch_bytes=s.workspace.nbytes,
                                    batches=sorted(s.runners), busy=s.busy) for s in self.slots],
                        arena_bytes=sum(s.arena.nbytes for s in self.slots),
                        scratch_bytes=sum(s.workspace.nbytes for s in self.slots))
