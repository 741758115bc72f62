"""Progress of long work (training epochs, tuning trials, models evaluated), for whoever shows it.

The library reports steps with :func:`step`; nothing is shown unless a caller installed a
listener with :func:`listening` (the command line draws Rich progress bars). Listeners are kept
in a context variable, so threads and tasks that did not install one report to nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: ``(task, done, total)``: ``task`` names the work ("two-tower epochs"), ``done`` of ``total``
#: steps are finished (``total`` may be an upper bound, as with early stopping).
Listener = Callable[[str, int, int], None]

_listener: ContextVar[Listener | None] = ContextVar("rekko_progress", default=None)


def step(task: str, done: int, total: int) -> None:
    """Report that ``done`` of ``total`` steps of ``task`` are finished."""
    listener = _listener.get()
    if listener is not None:
        listener(task, done, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the progress reported inside the block to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
