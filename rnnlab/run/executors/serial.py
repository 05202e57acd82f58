"""The serial executor: each batch is trained in this process when its result is asked for."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator

from rnnlab.run.executors.base import Done


class Serial:
    """One batch at a time, here: ``done()`` trains the submitted batch and returns it."""

    window = 1

    def __init__(self, task: Callable):
        self.task = task
        self.queue: deque = deque()

    def submit(self, number: int, specs: list) -> None:
        self.queue.append((number, specs))

    def done(self) -> list[Done]:
        number, specs = self.queue.popleft()
        return [Done(number, specs, self.task(specs))]

    def cancel(self) -> None:
        self.queue.clear()


@contextlib.contextmanager
def open_serial(task: Callable) -> Iterator[Serial]:
    yield Serial(task)
