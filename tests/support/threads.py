"""Run a function in several threads at once; any exception fails the caller's test."""
from __future__ import annotations

import threading
from typing import Callable


def run_concurrently(fn: Callable[[], None], threads: int) -> None:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)

    workers = [threading.Thread(target=guarded) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
