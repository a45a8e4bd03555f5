"""python -m l2o.pretrained export CHECKPOINT NAME [NOTE] [--set KEY=VALUE ...]: write l2o/pretrained/NAME.pt."""
import argparse

import yaml

from l2o.errors import L2OError
from l2o.pretrained import export


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, yaml.safe_load(value)


parser = argparse.ArgumentParser(prog="python -m l2o.pretrained", description="Ship a trained optimizer in l2o/pretrained/.")
parser.add_argument("command", choices=["export"])
parser.add_argument("checkpoint", help="a training checkpoint, or a run directory (its best.pt)")
parser.add_argument("name", help="the shipped name: LearnedOptimizer.from_pretrained(NAME, model)")
parser.add_argument("note", nargs="*", help="provenance: the command and evaluation that back it")
parser.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                    help="a field of the architecture's config that holds no weights, changed for deployment (e.g. warmup=30)")
args = parser.parse_intermixed_args()
try:
    print(export(args.checkpoint, args.name, " ".join(args.note), dict(args.settings)))
except L2OError as exc:
    parser.exit(2, f"python -m l2o.pretrained: error: {exc}\n")
