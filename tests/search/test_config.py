"""The config error corpus: every bad config gives one line naming key, expectation and finding."""

from pathlib import Path

import pytest

from search.config import load_config
from search.errors import ConfigError

GOOD = """
name: t
space: addernet-resnet
budget: {trials: 3, epochs: 1}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_good_config_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.objective_names == ["val_accuracy", "energy_mj"]
    assert cfg.directions == ["maximize", "minimize"]
    assert cfg.out_dir == Path("runs/t")


def test_overrides_and_cli_flags(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), ["budget.trials=7", "evaluator.lr=0.1", "fixed.stage1.op=adder"], workers=3)
    assert cfg.budget.trials == 7 and cfg.evaluator.lr == 0.1 and cfg.workers == 3
    assert cfg.fixed == {"stage1.op": "adder"}


CORPUS = [
    ("space: addernet-resnet\n", "config key 'name': expected a value (the key is required)"),
    (GOOD + "budget: {trials: 0}\n", "config key 'budget.trials': expected greater than or equal to 1, found 0"),
    (GOOD.replace("addernet-resnet", "addernet-resnt"), "config key 'space': expected a registered space"),
    (GOOD + "objectives: [{name: val_accuracy, direction: up}]\n", "config key 'objectives.0.direction'"),
    (GOOD + "objectives: [{name: accuracy, direction: maximize}]\n", "config key 'objectives.0.name'"),
    (GOOD + "strategy: {name: annealing}\n", "config key 'strategy.name'"),
    (GOOD + "evaluator: {data: mnist}\n", "config key 'evaluator.data'"),
    (GOOD + "hardware: {device: zcu999}\n", "config key 'hardware.device'"),
    (GOOD + "constraints: ['lut <== 3']\n", "config key 'constraints.0'"),
    (GOOD + "fixed: {stage1.op: fpga}\n", "config key 'fixed.stage1.op'"),
    (GOOD + "fixed: {stage9.op: conv}\n", "config key 'fixed.stage9.op'"),
    (GOOD + "workers: two\n", "config key 'workers'"),
    (GOOD + "restrict: {stage1.op: [conv, fpga]}\n", "config key 'restrict.stage1.op'"),
    (GOOD + "wrokers: 2\n", "config key 'wrokers': expected no such key"),
    ("- just\n- a list\n", "config key 'CONFIG': expected a YAML mapping"),
    ("name: [unclosed\n", "config key 'CONFIG': expected valid YAML"),
]


@pytest.mark.parametrize("text, message", CORPUS)
def test_error_corpus(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(message), line


def test_missing_file_and_bad_set(tmp_path):
    with pytest.raises(ConfigError, match="expected an existing YAML file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="'--set': expected key=value"):
        load_config(write(tmp_path, GOOD), ["budget.trials"])
