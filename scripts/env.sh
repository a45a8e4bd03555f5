# Sourced by the other scripts: create .venv and install l2o (editable, with test extras)
# when it is missing or pyproject.toml changed since, and point L2O_DATA_DIR at the offline
# data unless it is already set.
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ] || [ ! -x .venv/bin/l2o-train ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
export L2O_DATA_DIR="${L2O_DATA_DIR:-$(cd .. && pwd)/shared/data}"
