"""python -m l2o.pretrained export CHECKPOINT NAME [NOTE...]: write l2o/pretrained/NAME.pt."""
import sys

from l2o.pretrained import export

if len(sys.argv) < 4 or sys.argv[1] != "export":
    raise SystemExit("usage: python -m l2o.pretrained export CHECKPOINT NAME [NOTE]")
print(export(sys.argv[2], sys.argv[3], " ".join(sys.argv[4:])))
