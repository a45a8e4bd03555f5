"""A study: a named, versioned list of units (`conf/study/NAME.yaml`), each one run of `l2o-train`
or `l2o-eval` given as the overrides a user would type. Units name the units they need (the
checkpoint an evaluation loads, the φ a training starts from) instead of paths, so the runner knows
the order and every unit's run directory follows from its name:
`<root>/<size>/<study>/<unit>` (root `outputs/study`).

    units:
      mnist/train:    {cli: train, overrides: [experiment=mnist], minutes: 40}
      mnist/steps200: {cli: eval, overrides: [experiment=mnist, protocol=steps200], checkpoint: mnist/train}
      cifar10/train:  {cli: train, overrides: [experiment=cifar10_cpu], sizes: {paper: [experiment=cifar10]}}
      mnist/lstm:     {ref: paper:mnist/train}     # another study's unit: the same run directory
      mnist/stage1:   {cli: eval, ..., checkpoint: mnist/train@checkpoints/best_stage1.pt}   # a file in a unit's dir

A size (`cpu`, the default, or `paper`) replaces the overrides whose key it names. `minutes` is the
unit's measured wall time on 2 CPU cores at size cpu: what `l2o-study list` adds up.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from l2o.errors import L2OError

SIZES = ("cpu", "paper")
CLIS = {"train": "l2o-train", "eval": "l2o-eval"}
UNIT_KEYS = {"cli", "overrides", "sizes", "minutes", "checkpoint", "learned", "init", "baselines_from", "ref", "note"}
# which reference fields each CLI takes, and the override each becomes
REFS = {"train": {"init": "init"}, "eval": {"checkpoint": "checkpoint", "baselines_from": "baselines_from"}}
NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*(/[a-z0-9][a-z0-9_.\-]*)*$")


@dataclass
class Unit:
    """One run: `cli` with `overrides` (references already turned into paths), in `run_dir`."""

    study: str
    name: str
    cli: str
    overrides: list[str]
    run_dir: Path
    needs: list[tuple[str, str]] = field(default_factory=list)   # (study, unit) this one reads
    minutes: float | None = None
    note: str | None = None
    size: str = "cpu"

    @property
    def key(self) -> tuple[str, str]:
        return self.study, self.name

    @property
    def label(self) -> str:
        return f"{self.study}:{self.name}"

    def command(self) -> str:
        """The one-run command that does what this unit does."""
        return " ".join([CLIS[self.cli], *(_quote(o) for o in self.overrides), f"hydra.run.dir={self.run_dir}"])


@dataclass
class Study:
    name: str
    version: int
    description: str
    units: dict[str, dict[str, Any]]
    report: dict[str, Any]
    sizes: tuple[str, ...]
    path: Path


def _quote(override: str) -> str:
    return f"'{override}'" if re.search(r"[\[\]\s,*?{}()]", override) else override


def override_key(override: str) -> str:
    """`a.b=1` -> `a.b`, `+learned.x=..` -> `learned.x`, `~imitation` -> `imitation`."""
    return override.split("=", 1)[0].lstrip("+~")


EVAL_ONLY = {"workers"}   # pass-through keys that only l2o-eval has


def passthrough_for(cli: str, passthrough: Iterable[str]) -> list[str]:
    """The settings given to every unit on `l2o-study run`'s command line that `cli` takes."""
    return [o for o in passthrough if cli == "eval" or override_key(o) not in EVAL_ONLY]


def study_dirs(config_dirs: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Where studies are looked up: each `--config-dir`'s `study/` first (a user's own), then l2o's."""
    from l2o.cli.common import CONF_DIR

    return [Path(d) / "study" for d in config_dirs] + [Path(CONF_DIR) / "study"]


def available(config_dirs: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in study_dirs(config_dirs):
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def load(name: str, config_dirs: list[str] | tuple[str, ...] = ()) -> Study:
    studies = available(config_dirs)
    if name not in studies:
        raise L2OError(f"no study {name!r}; available: {', '.join(studies) or '(none)'} "
                       f"(conf/study/NAME.yaml, or study/NAME.yaml in a --config-dir).")
    path = studies[name]
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # a YAML syntax error: say which file
        raise L2OError(f"{path}: not a readable study ({exc}).") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("units"), dict) or not raw["units"]:
        raise L2OError(f"{path}: a study needs a non-empty mapping `units:`.")
    unknown = set(raw) - {"name", "version", "description", "units", "report", "sizes", "aliases"}
    if unknown:
        raise L2OError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: name, version, description, "
                       "units, report, sizes, aliases (YAML anchors shared by units).")
    if raw.get("name", name) != name:
        raise L2OError(f"{path}: name: {raw['name']!r} differs from the file's name {name!r}.")
    sizes = tuple(raw.get("sizes") or SIZES)
    if not set(sizes) <= set(SIZES):
        raise L2OError(f"{path}: sizes {list(sizes)} must be among {list(SIZES)}.")
    for unit, spec in raw["units"].items():
        if isinstance(spec, dict):  # an anchored list of overrides inside a list: flatten it
            for key in ("overrides",):
                if isinstance(spec.get(key), list):
                    spec[key] = _flatten(spec[key])
            if isinstance(spec.get("sizes"), dict):
                spec["sizes"] = {k: _flatten(v) if isinstance(v, list) else v for k, v in spec["sizes"].items()}
        _check_unit(path, unit, spec, raw["units"])
    return Study(name=name, version=int(raw.get("version", 1)), description=str(raw.get("description", "")).strip(),
                 units=raw["units"], report=raw.get("report") or {}, sizes=sizes, path=path)


def _flatten(items: list[Any]) -> list[Any]:
    return [x for item in items for x in (_flatten(item) if isinstance(item, list) else [item])]


def _check_unit(path: Path, name: str, spec: Any, units: dict[str, Any]) -> None:
    where = f"{path}: unit {name!r}"
    if not NAME.match(name):
        raise L2OError(f"{where}: unit names are lowercase words joined by '/' (e.g. mnist/train).")
    if not isinstance(spec, dict):
        raise L2OError(f"{where}: must be a mapping (cli, overrides, ...).")
    unknown = set(spec) - UNIT_KEYS
    if unknown:
        raise L2OError(f"{where}: unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(UNIT_KEYS))}.")
    if "ref" in spec:
        if set(spec) - {"ref", "note"}:
            raise L2OError(f"{where}: a `ref:` unit is another study's unit and takes no other keys but note.")
        if not isinstance(spec["ref"], str) or ":" not in spec["ref"]:
            raise L2OError(f"{where}: ref={spec['ref']!r} must be STUDY:UNIT.")
        return
    if spec.get("cli") not in CLIS:
        raise L2OError(f"{where}: cli={spec.get('cli')!r} must be one of {list(CLIS)}.")
    for key in ("overrides",):
        value = spec.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise L2OError(f"{where}: {key} must be a list of override strings.")
    sizes = spec.get("sizes") or {}
    if not isinstance(sizes, dict) or not set(sizes) <= set(SIZES) or not all(
            isinstance(v, list) and all(isinstance(o, str) for o in v) for v in sizes.values()):
        raise L2OError(f"{where}: sizes must map {list(SIZES)} to lists of override strings.")
    allowed = set(REFS[spec["cli"]]) | ({"learned"} if spec["cli"] == "eval" else set())
    wrong = {"checkpoint", "learned", "init", "baselines_from"} & set(spec) - allowed
    if wrong:
        raise L2OError(f"{where}: {sorted(wrong)} do not apply to cli={spec['cli']} (it takes {sorted(allowed)}).")
    if spec["cli"] == "eval" and "checkpoint" not in spec and not any(
            override_key(o) == "checkpoint" for o in spec.get("overrides", [])):
        raise L2OError(f"{where}: an eval unit needs checkpoint: UNIT (or a checkpoint=PATH override).")
    if "minutes" in spec and not (isinstance(spec["minutes"], (int, float)) and spec["minutes"] >= 0):
        raise L2OError(f"{where}: minutes={spec['minutes']!r} must be a number >= 0.")


def _split_ref(value: str, study: str) -> tuple[str, str, str]:
    """`UNIT`, `STUDY:UNIT`, each optionally `@FILE` (a file in its run directory, e.g.
    `mnist/train@checkpoints/best_stage1.pt`) -> (study, unit, file)."""
    ref, _, file = value.partition("@")
    other, _, unit = ref.rpartition(":")
    return other or study, unit, file


def _relative(root: Path) -> Path:
    """An absolute root inside the working directory, as the relative path it is: the units' paths
    (checkpoint=, baselines_from=, ...) go into their composed configs, and a record made with
    root=$PWD/outputs/study must restore in a clone run with the default root, and vice versa."""
    if root.is_absolute():
        try:
            return root.relative_to(Path.cwd())
        except ValueError:
            pass
    return root


class Resolver:
    """Turns studies' units into runnable `Unit`s for one size and root, following `ref:`s and the
    references between units (loading the other studies they name)."""

    def __init__(self, size: str, root: Path, config_dirs: tuple[str, ...] = ()):
        if size not in SIZES:
            raise L2OError(f"size={size!r} is unknown; allowed: {', '.join(SIZES)}.")
        self.size, self.root, self.config_dirs = size, _relative(Path(root)), tuple(config_dirs)
        self.studies: dict[str, Study] = {}
        self.cache: dict[tuple[str, str], Unit] = {}
        self.resolving: list[tuple[str, str]] = []   # the units being resolved: a reference back to one is a cycle

    def study(self, name: str) -> Study:
        if name not in self.studies:
            self.studies[name] = load(name, self.config_dirs)
            if self.size not in self.studies[name].sizes:
                raise L2OError(f"study {name!r} has no size {self.size!r}; it has {list(self.studies[name].sizes)}.")
        return self.studies[name]

    def units(self, study: str) -> list[Unit]:
        """The study's own units, in file order."""
        return [self.unit(study, name) for name in self.study(study).units]

    def closure(self, study: str, only: Sequence[str] = ()) -> list[Unit]:
        """The study's units and every unit they need, each once, needs first. `only`: glob patterns
        of unit names (`mnist/*`), to run or show one figure's units (and what they need) alone."""
        out: dict[tuple[str, str], Unit] = {}

        def visit(unit: Unit) -> None:  # a cycle was refused while resolving the units
            for dep in unit.needs:
                visit(self.unit(*dep))
            out.setdefault(unit.key, unit)

        units = self.units(study)
        for unit in units:
            if not only or any(fnmatchcase(unit.name, pattern) for pattern in only):
                visit(unit)
        if not out:
            raise L2OError(f"no unit of study {study} matches units={','.join(only)}; its units: "
                           f"{', '.join(u.name for u in units)}.")
        return list(out.values())

    def unit(self, study: str, name: str) -> Unit:
        key = (study, name)
        if key in self.cache:
            return self.cache[key]
        if key in self.resolving:
            chain = self.resolving[self.resolving.index(key):] + [key]
            raise L2OError(f"units depend on each other in a cycle: {' -> '.join(f'{s}:{u}' for s, u in chain)}.")
        self.resolving.append(key)
        try:
            return self._resolve(study, name)
        finally:
            self.resolving.pop()

    def _resolve(self, study: str, name: str) -> Unit:
        key = (study, name)
        spec_study = self.study(study)
        if name not in spec_study.units:
            raise L2OError(f"study {study!r} has no unit {name!r}; it has {', '.join(spec_study.units)}.")
        spec = spec_study.units[name]
        if "ref" in spec:
            other, other_name, _ = _split_ref(spec["ref"], study)
            self.cache[key] = unit = self.unit(other, other_name)
            return unit
        overrides = list(spec.get("overrides", []))
        replace = spec.get("sizes", {}).get(self.size, [])
        keys = {override_key(o) for o in replace}
        overrides = [o for o in overrides if override_key(o) not in keys] + list(replace)
        needs: list[tuple[str, str]] = []

        def path_of(value: str, field_name: str) -> str:
            s, u, file = _split_ref(value, study)
            target = self.unit(s, u)
            expected = {"init": "train", "checkpoint": "train", "learned": "train", "baselines_from": "eval"}[field_name]
            if target.cli != expected:
                raise L2OError(f"{spec_study.path}: unit {name!r}: {field_name}={value!r} must name an {expected} unit.")
            needs.append(target.key)
            return str(target.run_dir / file) if file else str(target.run_dir)

        for field_name, override in REFS[spec["cli"]].items():
            if field_name in spec:
                overrides.append(f"{override}={path_of(spec[field_name], field_name)}")
        for learned_name, value in (spec.get("learned") or {}).items():
            overrides.append(f"+learned.{learned_name}={path_of(value, 'learned')}")
        unit = Unit(study=study, name=name, cli=spec["cli"], overrides=overrides,
                    run_dir=self.root / self.size / study / name, needs=needs,
                    minutes=spec.get("minutes"), note=spec.get("note"), size=self.size)
        self.cache[key] = unit
        return unit


def plain(node: Any) -> Any:
    """A config node as plain containers (unresolved), for comparing composed configs."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node
