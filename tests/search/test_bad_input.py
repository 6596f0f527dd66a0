"""The bad-input corpus: every case exits 2 with one line that names the input, and writes nothing.

Cases span config keys, ``--set``, CLI flags, every command, and files from elsewhere (configs,
device YAMLs, exports, run directories, journals). They run in-process through Typer's test
runner (each in a fresh working directory), so the whole corpus takes seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from search.cli import app

SMALL = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
         "stage3.blocks": 1, "manidp.enabled": False}
BASE = {"name": "corpus", "space": "addernet-resnet", "fixed": SMALL, "budget": {"trials": 2, "epochs": 1},
        "strategy": {"name": "random"}, "executor": "local", "workers": 1, "mlflow": {"tracking_uri": "sqlite:///mlflow.db"}}
GOOD_DEVICE = {"name": "tiny", "family": "test", "lut": 1000, "ff": 2000, "dsp": 10, "bram36": 5, "clock_mhz": 100}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and v else v
    return out


def _device_file(d: Path, text: str) -> str:
    (d / "dev.yaml").write_text(text)
    return "dev.yaml"


def _export(d: Path, arch_json: str | None, weights: bytes | None = None, name: str = "weights.pt") -> str:
    m = d / "model"
    m.mkdir()
    if arch_json is not None:
        (m / "arch.json").write_text(arch_json)
    if weights is not None:
        (m / name).write_bytes(weights)
    return "model"


def _arch_json(**over) -> str:
    from spaces import get_space

    s = get_space("addernet-resnet")
    return json.dumps({"format": "abacus-export/1", "space": "addernet-resnet", "arch": {**s.default(), **SMALL},
                       "task": {"input_shape": [1, 8, 8], "num_classes": 10}, **over})


def _run_dir(d: Path, run_json: str | None = '{"parent_run_id": "abc", "tracking_uri": "sqlite:///nowhere.db"}',
             journal: bytes | None = None, config: dict | None = None) -> str:
    r = d / "runs" / "corpus"
    r.mkdir(parents=True)
    (r / "config.yaml").write_text(yaml.safe_dump(config or BASE))
    if run_json is not None:
        (r / "run.json").write_text(run_json)
    (r / "study.journal").write_bytes(journal if journal is not None else b"")
    return "runs/corpus"


def _optuna_journal(name: str = "corpus") -> bytes:
    return (json.dumps({"op_code": 0, "worker_id": "w", "study_name": name, "directions": [2, 1]}) + "\n").encode()


# (id, setup(dir) -> argv, the text the line must contain)
CASES: list[tuple[str, object, str]] = []


def config_case(case_id: str, over: dict, needle: str, extra: tuple[str, ...] = ()) -> None:
    CASES.append((case_id, lambda d, over=over, extra=extra: _write_config(d, _merge(BASE, over), extra), needle))


def _write_config(d: Path, cfg: dict, extra: tuple[str, ...]) -> list[str]:
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    return ["search", "c.yaml", "--no-progress", *extra]


def set_case(case_id: str, sets: list[str], needle: str) -> None:
    def setup(d, sets=sets):
        (d / "c.yaml").write_text(yaml.safe_dump(BASE))
        return ["search", "c.yaml", "--no-progress", *[a for s in sets for a in ("--set", s)]]

    CASES.append((case_id, setup, needle))


def argv_case(case_id: str, argv, needle: str) -> None:
    CASES.append((case_id, argv if callable(argv) else (lambda d, argv=argv: list(argv)), needle))


# -- config keys ----------------------------------------------------------------------------------
config_case("name-empty", {"name": ""}, "name")
config_case("name-slash", {"name": "a/b"}, "name")
config_case("name-nul", {"name": "a\x00b"}, "name")
config_case("name-newline", {"name": "a\nb"}, "name")
config_case("space-unknown", {"space": "no-such-space"}, "space")
config_case("objectives-empty", {"objectives": []}, "objectives")
config_case("objective-unknown", {"objectives": [{"name": "beauty", "direction": "maximize"}]}, "objectives.0.name")
config_case("objective-twice", {"objectives": [{"name": "val_accuracy", "direction": "maximize"}] * 2}, "objectives.1.name")
config_case("objective-direction", {"objectives": [{"name": "val_accuracy", "direction": "up"}]}, "objectives.0.direction")
config_case("strategy-unknown", {"strategy": {"name": "nope"}}, "strategy.name")
config_case("strategy-option-unknown", {"strategy": {"name": "tpe", "options": {"bogus": 1}}}, "strategy.options")
config_case("strategy-option-type", {"strategy": {"name": "tpe", "options": {"n_startup_trials": "many"}}}, "strategy.options")
config_case("trials-zero", {"budget": {"trials": 0}}, "budget.trials")
config_case("trials-negative", {"budget": {"trials": -3}}, "budget.trials")
config_case("epochs-huge", {"budget": {"epochs": 1e26}}, "budget.epochs")
config_case("epochs-text", {"budget": {"epochs": "abc"}}, "budget.epochs")
config_case("timeout-negative", {"budget": {"trial_timeout_s": -1}}, "budget.trial_timeout_s")
config_case("max-failures-negative", {"budget": {"max_failures": -1}}, "budget.max_failures")
config_case("scheduler-unknown", {"scheduler": {"name": "nope"}}, "scheduler.name")
config_case("scheduler-no-rung", {"scheduler": {"name": "mo-asha", "min_epochs": 1}, "objectives": [{"name": "val_accuracy", "direction": "maximize"}]}, "scheduler.min_epochs")
config_case("scheduler-pruner-two-objectives", {"budget": {"epochs": 3}, "scheduler": {"name": "median"}, "objectives": [{"name": "val_accuracy", "direction": "maximize"}, {"name": "energy_mj", "direction": "minimize"}]}, "scheduler.name")
config_case("data-unknown", {"evaluator": {"data": "nope"}}, "evaluator.data")
config_case("data-kwargs-unknown", {"evaluator": {"data_kwargs": {"bogus": 1}}}, "evaluator.data_kwargs")
config_case("data-path-missing", {"evaluator": {"data": "imagefolder", "data_kwargs": {"root": "/no/such/folder"}}}, "evaluator.data")
config_case("lr-zero", {"evaluator": {"lr": 0}}, "evaluator.lr")
config_case("lr-nan", {"evaluator": {"lr": float("nan")}}, "evaluator.lr")
config_case("optimizer-unknown", {"evaluator": {"optimizer": "rmsprop"}}, "evaluator.optimizer")
config_case("batch-zero", {"evaluator": {"batch_size": 0}}, "evaluator.batch_size")
config_case("function-missing", {"evaluator": {"function": "no_such_module:fn"}}, "evaluator.function")
config_case("device-unknown", {"hardware": {"device": "nope"}}, "hardware.device")
config_case("device-file-missing", {"hardware": {"device": "missing.yaml"}}, "hardware.device")
config_case("pe-array-nonpositive", {"hardware": {"pe_array": [0, -4]}}, "hardware.pe_array")
config_case("pe-array-length", {"hardware": {"pe_array": [4]}}, "hardware.pe_array")
config_case("default-bits", {"hardware": {"default_bits": 99}}, "hardware.default_bits")
config_case("style-unknown", {"hardware": {"style": "nope"}}, "hardware.style")
config_case("constraint-grammar", {"constraints": ["lut <<= 3"]}, "constraints.0")
config_case("constraint-field", {"constraints": ["val_accuracy >= 0.5"]}, "constraints.0")
config_case("constraint-relative", {"constraints": ["latency_ms <= 0.5 * device"]}, "constraints.0")
config_case("reference-unknown", {"reference_point": {"nope": 1.0}}, "reference_point.nope")
config_case("seed-negative", {"seed": -1}, "seed")
config_case("seed-huge", {"seed": 2**40}, "seed")
config_case("workers-zero", {"workers": 0}, "workers")
config_case("executor-unknown", {"executor": "dask"}, "executor")
config_case("cpus-zero", {"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial")
config_case("gpus-negative", {"resources": {"gpus_per_trial": -1}}, "resources.gpus_per_trial")
config_case("fixed-unknown", {"fixed": {"nope": 1}}, "fixed.nope")
config_case("fixed-value", {"fixed": {**SMALL, "stage1.width": 7}}, "fixed.stage1.width")
config_case("restrict-value", {"restrict": {"stage1.op": ["nope"]}}, "restrict.stage1.op")
config_case("unknown-key", {"bogus": 1}, "bogus")
config_case("retrain-epochs", {"retrain": {"epochs": 0}}, "retrain.epochs")

# -- --set and flags --------------------------------------------------------------------------------
set_case("set-no-equals", ["budget.trials"], "--set")
set_case("set-no-key", ["=3"], "--set")
set_case("set-bad-yaml", ["budget.trials=[unclosed"], "--set budget.trials")
set_case("set-into-scalar", ["budget.trials.x=3"], "budget.trials")
set_case("set-wrong-type", ["workers=many"], "workers")
argv_case("flag-trials-zero", lambda d: _write_config(d, BASE, ("--trials", "0")), "budget.trials")
argv_case("flag-workers-negative", lambda d: _write_config(d, BASE, ("--workers", "-1")), "workers")
argv_case("flag-executor-unknown", lambda d: _write_config(d, BASE, ("--executor", "dask")), "executor")


def _out_is_a_file(d: Path) -> list[str]:
    (d / "afile").write_text("x")
    return _write_config(d, BASE, ("--out", "afile"))


argv_case("flag-out-is-a-file", _out_is_a_file, "out")


def _existing_run(d: Path) -> list[str]:
    _run_dir(d)
    return _write_config(d, BASE, ())


argv_case("run-dir-taken", _existing_run, "runs/corpus")

# -- config files ---------------------------------------------------------------------------------
argv_case("config-missing", ["search", "nope.yaml"], "nope.yaml")


def _config_text(text: bytes):
    def setup(d: Path) -> list[str]:
        (d / "c.yaml").write_bytes(text)
        return ["search", "c.yaml"]

    return setup


argv_case("config-not-utf8", _config_text(b"name: \xff\xfe\x00bad\n"), "c.yaml")
argv_case("config-bad-yaml", _config_text(b"name: [unclosed\n"), "c.yaml")
argv_case("config-a-list", _config_text(b"- 1\n- 2\n"), "CONFIG")
argv_case("config-no-space", _config_text(b"name: x\n"), "space")

# -- device YAMLs -------------------------------------------------------------------------------------
for case_id, text in [("device-yaml-broken", "lut: [1, 2\n"), ("device-yaml-list", "- 1\n"),
                      ("device-yaml-missing-keys", "name: tiny\n"), ("device-yaml-text-number", yaml.safe_dump({**GOOD_DEVICE, "lut": "many"})),
                      ("device-yaml-negative", yaml.safe_dump({**GOOD_DEVICE, "dsp": -5}))]:
    config_case(case_id, {"hardware": {"device": "dev.yaml"}}, "hardware.device")
    CASES[-1] = (case_id, lambda d, text=text, setup=CASES[-1][1]: (_device_file(d, text), setup(d))[1], "hardware.device")
    argv_case(f"cost-{case_id}", lambda d, text=text: ["cost", "--space", "addernet-resnet", "--device", _device_file(d, text)], "--device")

# -- resume: run directories and journals ----------------------------------------------------------------
argv_case("resume-missing-dir", ["resume", "runs/none"], "runs/none")
argv_case("resume-bad-run-json", lambda d: ["resume", _run_dir(d, run_json="{broken")], "run.json")
argv_case("resume-run-json-list", lambda d: ["resume", _run_dir(d, run_json="[1, 2]")], "run.json")
argv_case("resume-journal-garbage", lambda d: ["resume", _run_dir(d, journal=b"garbage\n" + _optuna_journal())], "study.journal: line 1")
argv_case("resume-journal-other-study", lambda d: ["resume", _run_dir(d, journal=_optuna_journal("other"))], "study.journal")
argv_case("resume-journal-not-object", lambda d: ["resume", _run_dir(d, journal=_optuna_journal() + b"[1]\n")], "study.journal: line 2")
argv_case("resume-bad-config", lambda d: ["resume", _run_dir(d, config={**BASE, "workers": 0})], "workers")
argv_case("resume-store-missing", lambda d: ["resume", _run_dir(d, journal=_optuna_journal())], "run.json")

# -- cost ----------------------------------------------------------------------------------------------
COST = ["cost", "--space", "addernet-resnet"]
argv_case("cost-num-classes", [*COST, "--num-classes", "-5"], "--num-classes")
argv_case("cost-input-shape-huge", [*COST, "--input-shape", "3,99999,99999"], "--input-shape")
argv_case("cost-input-shape-text", [*COST, "--input-shape", "a,b"], "--input-shape")
argv_case("cost-input-shape-zero", [*COST, "--input-shape", "0,8,8"], "--input-shape")
argv_case("cost-bits-99", [*COST, "--bits", "99"], "--bits")
argv_case("cost-bits-0", [*COST, "--bits", "0"], "--bits")
argv_case("cost-device-unknown", [*COST, "--device", "nope"], "--device")
argv_case("cost-style", [*COST, "--style", "nope"], "--style")
argv_case("cost-mult-impl", [*COST, "--mult-impl", "nope"], "--mult-impl")
argv_case("cost-pe-array", [*COST, "--pe-array", "0,-4"], "--pe-array")
argv_case("cost-space-unknown", ["cost", "--space", "nope"], "nope")
argv_case("cost-no-space", ["cost"], "--space")
argv_case("cost-arch-json", [*COST, "--arch", "{bad"], "--arch")
argv_case("cost-arch-value", [*COST, "--arch", '{"stage1.width": 99}'], "stage1.width")
argv_case("cost-model-missing", ["cost", "--model", "nowhere"], "nowhere")
argv_case("export-arch-not-json", lambda d: ["cost", "--model", _export(d, "{nope")], "arch.json")
argv_case("export-arch-a-list", lambda d: ["cost", "--model", _export(d, "[1]")], "arch.json")
argv_case("export-space-not-text", lambda d: ["cost", "--model", _export(d, '{"space": 1, "arch": {}, "task": {}}')], "arch.json")
argv_case("export-no-weights", lambda d: ["cost", "--model", _export(d, _arch_json())], "weights")
argv_case("export-unknown-space", lambda d: ["cost", "--model", _export(d, _arch_json(space="someone-elses"), b"")], "someone-elses")
argv_case("export-evil-builder", lambda d: ["cost", "--model", _export(d, _arch_json(space="evil", space_definition={
    "name": "evil", "builder": "subprocess:run", "dimensions": []}), b"")], "evil")
argv_case("export-input-shape", lambda d: ["cost", "--model", _export(d, _arch_json(task={"input_shape": [1, -8, 8]}), b"")], "input_shape")
argv_case("export-bad-arch", lambda d: ["cost", "--model", _export(d, _arch_json(arch={"stage1.width": 99}), b"")], "stage1.width")
argv_case("export-corrupt-safetensors", lambda d: ["cost", "--model", _export(d, _arch_json(), b"\x00" * 64, "weights.safetensors")], "weights.safetensors")
argv_case("export-corrupt-pt", lambda d: ["cost", "--model", _export(d, _arch_json(), b"not a pickle")], "weights.pt")
argv_case("export-pt-not-a-dict", lambda d: ["cost", "--model", _export(d, _arch_json(), _torch_bytes([1, 2]))], "weights.pt")

# -- the other commands ------------------------------------------------------------------------------
argv_case("spaces-unknown", ["spaces", "nope-space"], "nope-space")
argv_case("export-store-missing", ["export", "abc123", "--tracking-uri", "sqlite:///none.db"], "none.db")
argv_case("compare-unknown", ["compare", "no-such-experiment", "--tracking-uri", "sqlite:///none.db"], "none.db")


def _torch_bytes(obj) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _snapshot(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in d.rglob("*")}


def test_corpus_is_large_enough():
    assert len(CASES) >= 60, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES), "case ids are unique"


@pytest.mark.parametrize("case_id, setup, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, case_id, setup, needle):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = setup(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(app, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:], result.stdout[-500:])
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]
    assert _snapshot(tmp_path) == before, "nothing written"
    assert os.getcwd() == str(tmp_path)
