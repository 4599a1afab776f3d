"""Configuration: YAML defaults merged with a user file and ``key=value`` overrides, validated by pydantic.

Every command's settings are a pydantic model (``extra="forbid"``: a misspelt key is an error, not a silent
default). Resolution order, later wins:

1. the model's field defaults,
2. the YAML file given with ``--config`` (which may name a parent with ``inherit: other.yaml``, resolved relative to
   the file),
3. explicit CLI options,
4. dotted ``key=value`` overrides (values parsed as YAML, so ``optim.lr=1e-3`` is a float and
   ``data.train_labels=[q,g]`` a list).

The resolved config is written next to the command's outputs (``config.yaml``), so every artifact records exactly
how it was made.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from jbot_edge.atomic import write_text
from jbot_edge.errors import JbotEdgeError, shorten

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2); PyYAML's YAML 1.1 rules insist on ``1.0e-3``."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


#: Largest document, counted in nodes after expanding aliases, that a config may describe. A real config has a few
#: hundred; an alias bomb ("billion laughs") a few dozen lines long describes billions and would exhaust memory
#: or time in the merge and validation steps, so it is refused before anything is constructed.
MAX_EXPANDED_NODES = 100_000


class AliasBombError(yaml.YAMLError):
    """A YAML document whose aliases expand beyond :data:`MAX_EXPANDED_NODES`."""


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Node count of ``node`` with every alias expanded (memoised per node, so linear in the composed graph)."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts once, not forever
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        else:
            size = 1
        memo[key] = min(size, 2 * MAX_EXPANDED_NODES)
    return memo[key]


def _yaml_load(text: str) -> Any:
    loader = _Loader(text)  # a SafeLoader subclass: safe
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise AliasBombError(f"the document expands to more than {MAX_EXPANDED_NODES} nodes through aliases "
                                 "(an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


class StrictModel(pydantic.BaseModel):
    """Base for every config section: unknown keys are rejected, assignments are validated."""

    # allow_inf_nan=False: `--epochs inf` or `optim.base_lr=.inf` is refused at parse time, not after an hour of work.
    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                                       allow_inf_nan=False)


def packaged_config(relative: str) -> Path:
    """Path of a YAML file shipped under ``configs/`` (e.g. ``pretrain/small.yaml``)."""
    path = CONFIG_DIR / relative
    if not path.is_file():
        raise JbotEdgeError(f"no packaged config {relative!r} under {CONFIG_DIR}")
    return path


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping, following ``inherit:`` chains."""
    path = Path(path)
    seen: list[Path] = []
    return _load_yaml_chain(path, seen)


def _load_yaml_chain(path: Path, seen: list[Path]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise JbotEdgeError(f"config {path}: 'inherit' forms a cycle")
    seen.append(path)
    if not path.is_file():
        raise JbotEdgeError(f"config file {path} does not exist")
    try:
        data = _yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise JbotEdgeError(f"config {path} is not valid YAML: {shorten(str(exc).splitlines()[0], quote=False)}") from exc
    if not isinstance(data, dict):
        raise JbotEdgeError(f"config {path} must hold a mapping at top level, got {type(data).__name__}")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    base = _load_yaml_chain((path.parent / str(parent)), seen)
    return deep_merge(base, data)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[x,y]"]`` into a nested mapping; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise JbotEdgeError(f"override {shorten(item)} must look like key=value (e.g. optim.lr=1e-3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise JbotEdgeError(f"override {shorten(item)} has an empty key")
        try:
            value = _yaml_load(raw) if raw.strip() else None
        except AliasBombError as exc:
            raise JbotEdgeError(f"override {shorten(key)}: {exc}") from exc
        except yaml.YAMLError:
            value = raw
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
            if not isinstance(cursor, dict):
                raise JbotEdgeError(f"override {shorten(item)} conflicts with another override of {shorten(part)}")
        cursor[parts[-1]] = value
    return nested


def describe_validation_error(exc: pydantic.ValidationError, limit: int = 5) -> str:
    """The offending key(s) and what was expected, on one line (echoed values are cut short)."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        else:
            problems.append(f"key '{key}': {err['msg']} (got {shorten(err.get('input'), 100)})")
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def format_validation_error(exc: pydantic.ValidationError, source: str) -> str:
    """One line naming the config source and the offending key(s)."""
    return f"config {source}: {describe_validation_error(exc)}"


def resolve_config(
    model_cls: type[ModelT],
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    cli_values: Mapping[str, Any] | None = None,
    default_file: str | Path | None = None,
) -> ModelT:
    """Build a validated config: model defaults ← default_file ← config_file ← cli_values ← overrides.

    ``cli_values`` uses dotted keys (``{"optim.epochs": 3}``); entries whose value is ``None`` are ignored so that
    unset CLI options do not clobber the file.
    """
    data: dict[str, Any] = {}
    sources = []
    if default_file is not None:
        data = deep_merge(data, load_yaml(default_file))
        sources.append(str(default_file))
    if config_file is not None:
        data = deep_merge(data, load_yaml(config_file))
        sources.append(str(config_file))
    if cli_values:
        # Typed values from CLI options are nested as they are, never re-parsed as YAML ("1e3" stays a string).
        nested: dict[str, Any] = {}
        for key, value in cli_values.items():
            if value is None:
                continue
            *parents, leaf = key.split(".")
            cursor = nested
            for part in parents:
                cursor = cursor.setdefault(part, {})
            cursor[leaf] = copy.deepcopy(value)
        data = deep_merge(data, nested)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        sources.append("overrides")
    try:
        return model_cls.model_validate(data)
    except pydantic.ValidationError as exc:
        raise JbotEdgeError(format_validation_error(exc, " + ".join(sources) or "defaults")) from exc


def config_to_dict(config: pydantic.BaseModel) -> dict[str, Any]:
    return config.model_dump(mode="json")


def save_config(config: pydantic.BaseModel, path: str | Path) -> Path:
    """Write the fully resolved config as YAML (atomically)."""
    return write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
