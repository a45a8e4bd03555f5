"""What meta-training reports: TensorBoard scalars (rank 0 only) and a progress bar."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm


class _NoWriter:
    """What processes other than rank 0 log to."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class MetaLogger:
    """TensorBoard scalars under `run_dir/tb` and a tqdm bar over epochs. `purge_from` (a
    resumed run's epoch) drops events a killed run logged after its last checkpoint."""

    def __init__(self, run_dir: Path, epochs: int, start_epoch: int, *, main: bool, progress: bool,
                 purge_from: int | None = None):
        self.main = main
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge_from) if main else _NoWriter()
        self.bar = tqdm(total=epochs, initial=start_epoch, desc="meta-train", disable=not (progress and main),
                        dynamic_ncols=True, mininterval=1.0)

    def scalars(self, epoch: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, epoch)

    def epoch_done(self, meta_loss: float, best_val: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(meta_loss=f"{meta_loss:.4g}", best_val=f"{best_val:.4g}")

    def message(self, text: str) -> None:
        if self.main:
            tqdm.write(text)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
