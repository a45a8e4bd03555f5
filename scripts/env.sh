# Sourced by the other scripts: create .venv and install l2o (editable, with test extras)
# once, and point L2O_DATA_DIR at the offline data unless it is already set.
if [ ! -x .venv/bin/l2o-train ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
fi
export L2O_DATA_DIR="${L2O_DATA_DIR:-$(cd .. && pwd)/shared/data}"
