"""What image optimizees (neural art) look like along the optimization: for a few test problems,
each optimizer's image at a few steps, next to the content and style images, as one PNG.

Each optimizer is rerun on those problems exactly as the evaluation runs it (the learned nets,
the baselines at their tuned learning rates); the problems are deterministic, so the images are
the evaluation's own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from l2o.evaluation.runners import OptimizerFactory, snapshots
from l2o.optimizees.base import split_seeds
from l2o.optimizers.base import OptimizerNet
from l2o.utils import atomic_write


def collect(family: Any, learned: dict[str, OptimizerNet], baselines: dict[str, OptimizerFactory],
            lrs: dict[str, float | None], steps: Sequence[int], num_problems: int,
            device: torch.device | str = "cpu") -> dict[str, Any]:
    """{"steps", "content", "style", "names", "images": {optimizer: (len(steps), P, 3, H, W)}}
    for the first `num_problems` test problems."""
    problem = family.sample(split_seeds("test", num_problems), device)
    images: dict[str, torch.Tensor] = {}
    for name in [*learned, *baselines]:
        opt = learned[name] if name in learned else (baselines[name], lrs[name])
        snaps = snapshots(opt, problem, steps)
        images[name] = torch.stack([problem.images(snaps[s]).clamp(0, 1).cpu() for s in sorted(snaps)])
    return {"steps": sorted(set(int(s) for s in steps)), "content": problem.content.cpu(),
            "style": family.style_image.cpu(), "names": list(problem.content_names),
            "description": family.description or "", "images": images}


def draw(path: str | Path, gallery: dict[str, Any], title: str = "") -> None:
    """One block per problem: a row per optimizer, a column per step, the content and style
    images in front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, names = gallery["steps"], list(gallery["images"])
    P = gallery["content"].shape[0]
    rows, cols = P * len(names), 2 + len(steps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows + 0.6), squeeze=False)
    show = lambda ax, img: ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")  # noqa: E731
    for p in range(P):
        for i, name in enumerate(names):
            r = p * len(names) + i
            for ax in axes[r]:
                ax.set_xticks([]), ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if i == 0:
                show(axes[r][0], gallery["content"][p])
                axes[r][0].set_title(f"content ({gallery['names'][p]})", fontsize=7)
                show(axes[r][1], gallery["style"][0])
                axes[r][1].set_title("style", fontsize=7)
            axes[r][2].set_ylabel(name, fontsize=8)
            for j, s in enumerate(steps):
                show(axes[r][2 + j], gallery["images"][name][j, p])
                if i == 0:
                    axes[r][2 + j].set_title(f"step {s}", fontsize=7)
    fig.suptitle(title or gallery.get("description", ""), fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)


def write(out: str | Path, gallery: dict[str, Any], title: str = "") -> None:
    """`images.pt` (the tensors) and `images.png` (the grid) in `out`."""
    out = Path(out)
    atomic_write(out / "images.pt", lambda fh: torch.save(gallery, fh))
    draw(out / "images.png", gallery, title)
