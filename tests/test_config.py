"""Config layer: merge order, inherit chains, override parsing and the one-line errors users see."""

from __future__ import annotations

import pytest
import yaml
from pydantic import Field

from jbot_edge.config import (StrictModel, deep_merge, load_yaml, packaged_config, parse_overrides, resolve_config,
                              save_config)
from jbot_edge.errors import JbotEdgeError


class Optim(StrictModel):
    lr: float = 1e-3
    epochs: int = Field(default=10, ge=1)
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.999])


class Config(StrictModel):
    name: str = "model-default"
    labels: list[str] = Field(default_factory=lambda: ["q", "g"])
    seed: int | None = None
    optim: Optim = Field(default_factory=Optim)


def write(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def test_merge_order_defaults_file_config_cli_overrides(tmp_path):
    default = write(tmp_path / "default.yaml", {"name": "from-default", "optim": {"lr": 0.1, "epochs": 2}})
    user = write(tmp_path / "user.yaml", {"name": "from-user", "optim": {"epochs": 3}})
    cfg = resolve_config(Config, config_file=user, default_file=default)
    assert (cfg.name, cfg.optim.lr, cfg.optim.epochs, cfg.labels) == ("from-user", 0.1, 3, ["q", "g"])

    cfg = resolve_config(Config, config_file=user, default_file=default,
                         cli_values={"optim.epochs": 4, "name": None, "seed": 5})
    assert (cfg.name, cfg.optim.epochs, cfg.seed) == ("from-user", 4, 5)  # None does not clobber the file

    cfg = resolve_config(Config, config_file=user, default_file=default, cli_values={"optim.epochs": 4},
                         overrides=["optim.epochs=6", "labels=[t, w]", "optim.lr=2e-4", "seed=", "name=a b"])
    assert cfg.optim.epochs == 6 and cfg.labels == ["t", "w"] and cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.seed is None and cfg.name == "a b"
    assert cfg.optim.betas == [0.9, 0.999]  # untouched nested defaults survive a partial section


def test_cli_values_with_awkward_strings_survive_the_yaml_round_trip():
    cfg = resolve_config(Config, cli_values={"name": "1e3", "labels": ["yes", "x: y", "[z]"]})
    assert cfg.name == "1e3" and cfg.labels == ["yes", "x: y", "[z]"]


def test_inherit_chain_is_relative_to_each_file_and_child_wins(tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base" / "root.yaml", {"name": "root", "seed": 1, "optim": {"lr": 0.5, "epochs": 9}})
    write(tmp_path / "base" / "mid.yaml", {"inherit": "root.yaml", "seed": 2, "optim": {"epochs": 8}})
    leaf = write(tmp_path / "leaf.yaml", {"inherit": "base/mid.yaml", "optim": {"epochs": 7}})
    assert load_yaml(leaf) == {"name": "root", "seed": 2, "optim": {"lr": 0.5, "epochs": 7}}
    cfg = resolve_config(Config, config_file=leaf)
    assert (cfg.name, cfg.seed, cfg.optim.lr, cfg.optim.epochs) == ("root", 2, 0.5, 7)


def test_inherit_cycle_and_missing_parent(tmp_path):
    write(tmp_path / "a.yaml", {"inherit": "b.yaml"})
    write(tmp_path / "b.yaml", {"inherit": "a.yaml"})
    with pytest.raises(JbotEdgeError, match="'inherit' forms a cycle"):
        load_yaml(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", {"inherit": "missing.yaml"})
    with pytest.raises(JbotEdgeError, match=r"config file .*missing.yaml does not exist"):
        load_yaml(tmp_path / "c.yaml")


def test_unknown_and_mistyped_keys_name_the_key_and_source(tmp_path):
    user = write(tmp_path / "user.yaml", {"optim": {"lrr": 0.1}})
    with pytest.raises(JbotEdgeError) as info:
        resolve_config(Config, config_file=user)
    assert str(info.value) == f"config {user}: unknown key 'optim.lrr'"
    with pytest.raises(JbotEdgeError, match=r"config overrides: key 'optim.epochs': .*greater than or equal to 1 "
                                            r"\(got 0\)"):
        resolve_config(Config, overrides=["optim.epochs=0"])
    with pytest.raises(JbotEdgeError, match=r"key 'seed': .*integer.*\(got 'abc'\)"):
        resolve_config(Config, overrides=["seed=abc"])
    with pytest.raises(JbotEdgeError, match="^config defaults: unknown key 'bogus'$"):
        resolve_config(Config, cli_values={"bogus": 1})


@pytest.mark.parametrize("items, expected", [
    (["a.b=1", "a.c=x", "d=[1, 2]"], {"a": {"b": 1, "c": "x"}, "d": [1, 2]}),
    (["lr=1e-3"], {"lr": 1e-3}),
    (["path=/tmp/x=y"], {"path": "/tmp/x=y"}),  # only the first '=' separates key and value
    (["flag=true", "empty="], {"flag": True, "empty": None}),
    (["text=[unclosed"], {"text": "[unclosed"}),  # not YAML: kept as the raw string
])
def test_parse_overrides(items, expected):
    assert parse_overrides(items) == expected


@pytest.mark.parametrize("items, message", [
    (["novalue"], "must look like key=value"),
    (["=3"], "has an empty key"),
    (["a..b=3"], "has an empty key"),
    (["a=1", "a.b=2"], "conflicts with another override of 'a'"),
])
def test_parse_overrides_errors(items, message):
    with pytest.raises(JbotEdgeError, match=message):
        parse_overrides(items)


@pytest.mark.parametrize("text, message", [
    ("name: [unclosed\n", "is not valid YAML"),
    ("- just\n- a list\n", "must hold a mapping at top level, got list"),
])
def test_bad_yaml_files(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(JbotEdgeError, match=message) as info:
        resolve_config(Config, config_file=path)
    assert "\n" not in str(info.value)


def test_empty_yaml_is_an_empty_mapping_and_save_round_trips(tmp_path):
    cfg = resolve_config(Config, config_file=write(tmp_path / "empty.yaml", ""), overrides=["optim.lr=0.25"])
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert resolve_config(Config, config_file=saved) == cfg
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["config.yaml"]  # no temp file left


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": [1], "c": 2}}
    merged = deep_merge(base, {"a": {"b": [3]}, "d": 4})
    merged["a"]["b"].append(5)
    assert base == {"a": {"b": [1], "c": 2}} and merged == {"a": {"b": [3, 5], "c": 2}, "d": 4}


def test_packaged_config_lookup():
    assert packaged_config("data/convert.yaml").is_file()
    with pytest.raises(JbotEdgeError, match="no packaged config 'data/nope.yaml'"):
        packaged_config("data/nope.yaml")
