"""The zoo table: every architecture × recipe on every setting at every evaluated horizon,
learned optimizer against tuned Adam, with the training wall time of each row.

    python scripts/zoo.py outputs/zoo      # reads <root>/<setting>_<arch>_<recipe>/{train,steps*}
                                           # writes <root>/ZOO.md (and prints it)
A cell is "learned / Adam" final loss (mean over the test problems); bold when the learned
optimizer is lower; "div k%" when some of its runs diverged; "–" when not run.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RUN = re.compile(r"^(?P<setting>[a-z0-9]+)_(?P<arch>.+)_(?P<recipe>paper|stable)$")


def _cell(summary: dict) -> str:
    opts = summary["optimizers"]
    learned = [row for row in opts.values() if row.get("lr") is None]
    adam = opts.get("adam")
    if not learned or adam is None:
        return "–"
    mine = learned[0]
    text = f"{mine['final_loss']:.3g} / {adam['final_loss']:.3g}"
    if mine["final_loss"] < adam["final_loss"]:
        text = f"**{text}**"
    if mine.get("diverged"):
        text += f" (div {100 * mine['diverged']:.0f}%)"
    return text


def zoo_table(root: Path) -> str:
    runs = sorted(p for p in root.iterdir() if p.is_dir() and RUN.match(p.name))
    settings = sorted({RUN.match(p.name)["setting"] for p in runs})
    horizons = sorted({int(s.name[5:]) for p in runs for s in p.glob("steps*") if (s / "summary.json").exists()})
    head = ["architecture", "recipe"] + [f"{s} @ {h:,}" for s in settings for h in horizons] + ["training wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows: dict[tuple[str, str], dict] = {}
    for p in runs:
        m = RUN.match(p.name)
        row = rows.setdefault((m["arch"], m["recipe"]), {})
        for h in horizons:
            f = p / f"steps{h}" / "summary.json"
            row[(m["setting"], h)] = _cell(json.loads(f.read_text())) if f.exists() else "–"
        result = p / "train" / "result.json"
        secs = json.loads(result.read_text()).get("train_seconds") if result.exists() else None
        row.setdefault("time", []).append(f"{m['setting']} {secs / 60:.0f} min" if secs else f"{m['setting']} –")
    for (arch, recipe), row in sorted(rows.items()):
        cells = [row.get((s, h), "–") for s in settings for h in horizons]
        lines.append("| " + " | ".join([arch, recipe, *cells, ", ".join(row["time"])]) + " |")
    return "\n".join(lines)


def main(root: Path) -> None:
    text = ("# Zoo: learned optimizer / tuned Adam, final training loss (mean over the test problems)\n\n"
            + zoo_table(root) + "\n")
    (root / "ZOO.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/zoo"))
