"""SIGINT/SIGTERM become a flag the training loop checks at epoch boundaries."""
from __future__ import annotations

import signal
from typing import Any


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the last checkpoint was written before raising."""

    def __init__(self, signum: int, epoch: int):
        super().__init__(f"{signal.Signals(signum).name} at epoch {epoch}")
        self.signum, self.epoch = signum, epoch


class SignalTrap:
    """Within the `with` block, SIGINT/SIGTERM set `signum` instead of stopping the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "SignalTrap":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
