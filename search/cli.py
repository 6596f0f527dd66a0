"""The ``abacus`` command: search, spaces, cost.

User errors (bad config, unknown names, malformed JSON) print one line on stderr and exit 2
with no traceback and nothing written; everything else is a bug and raises normally.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="abacus: neural-architecture search for efficient networks.",
                  pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        import importlib.metadata as md

        try:
            version = md.version("abacus-nas")
        except md.PackageNotFoundError:  # run from a source tree that was never installed
            version = "unknown (not installed)"
        typer.echo(f"abacus {version}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit")) -> None:
    """abacus: neural-architecture search for efficient networks."""


def _fail(message: str) -> None:
    typer.echo(f"abacus: error: {message}", err=True)
    raise typer.Exit(code=2)


def _user_errors():
    """Exceptions that mean bad input, not a bug."""
    from spaces import InvalidArchitectureError, UnknownNameError

    from supernets.export import ExportError

    from search.errors import ConfigError
    from search.journal import JournalError
    from search.preflight import PreflightError
    from search.runlock import RunLockedError
    from search.runs import RunLookupError

    return (ConfigError, InvalidArchitectureError, UnknownNameError, RunLookupError, PreflightError, RunLockedError, JournalError, ExportError)


def _run_engine(cfg, *, resume: bool, overwrite: bool, progress: bool | str) -> dict:
    """Run the search: bad input exits 2 (nothing written), a signal exits 130 with the resume
    line, a systematic stop exits 1 with its reason; each as one line on stderr."""
    from search.engine import SearchEngine
    from search.failures import ConstraintsExhausted, SystematicFailure
    from search.signals import SearchInterrupted

    engine = SearchEngine(cfg, progress=progress)
    try:
        summary = engine.run(resume=resume, overwrite=overwrite)
    except _user_errors() as exc:
        _fail(str(exc))
    except SearchInterrupted as exc:
        typer.echo(f"abacus: {exc}", err=True)
        raise typer.Exit(code=130) from None
    except (SystematicFailure, ConstraintsExhausted) as exc:
        typer.echo(f"abacus: {exc}", err=True)
        raise typer.Exit(code=1) from None
    engine.print_front(summary)
    return summary


@app.command()
def search(
    config: Path = typer.Argument(..., help="experiment YAML"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: --set budget.trials=8 (repeatable)"),
    trials: Optional[int] = typer.Option(None, "--trials", help="number of trials (budget.trials)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="parallel trials"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default runs/<name>)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="ray (default) or local (in-process, for debugging)"),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="join a Ray cluster: 'auto' or host:port (default: $RAY_ADDRESS; unset: a local Ray of its own)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar (and no per-trial lines when stderr is not a terminal)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start again in a run directory an earlier search used (its files are removed)"),
) -> None:
    """Run a multi-objective architecture search described by CONFIG."""
    from search.config import load_config

    try:
        cfg = load_config(config, set_, **{"budget.trials": trials, "workers": workers, "out": str(out) if out else None,
                                           "executor": executor, "address": address})
    except _user_errors() as exc:
        _fail(str(exc))
    from search.progress import choose_mode

    summary = _run_engine(cfg, resume=False, overwrite=overwrite, progress=choose_mode(not no_progress))
    if summary["complete"] == 0:
        raise typer.Exit(code=1)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="the run directory of an interrupted search (holds config.yaml, run.json, study.journal)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="ray or local"),
    address: Optional[str] = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="join a Ray cluster: 'auto' or host:port (default: $RAY_ADDRESS; unset: a local Ray of its own)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar (and no per-trial lines when stderr is not a terminal)"),
) -> None:
    """Continue an interrupted search: finished trials are kept, trials in flight run again once."""
    from search.config import load_config
    from search.engine import RUN_FILE

    needed = [n for n in ("config.yaml", RUN_FILE, "study.journal") if not (run_dir / n).is_file()]
    if needed:
        _fail(f"RUN_DIR: expected a run directory holding {', '.join(needed)}, found {str(run_dir)!r} without them")
    try:
        cfg = load_config(run_dir / "config.yaml", [], out=str(run_dir), executor=executor, address=address)
    except _user_errors() as exc:
        _fail(str(exc))
    from search.progress import choose_mode

    _run_engine(cfg, resume=True, overwrite=False, progress=choose_mode(not no_progress))  # a changed data split exits 2


def _arxiv_ids(space) -> list[str]:
    """The arXiv ids its dimensions cite, in first-seen order (the papers a space implements)."""
    import re

    seen: list[str] = []
    for d in space.dimensions:
        for found in re.findall(r"\d{4}\.\d{4,5}", d.paper or ""):
            if found not in seen:
                seen.append(found)
    return seen


@app.command()
def spaces(name: Optional[str] = typer.Argument(None, help="a space to describe")) -> None:
    """List the registered search spaces, or show one space's dimensions and source papers."""
    from rich.table import Table

    import spaces as sp

    console = _console()
    if name is None:
        table = Table(title="search spaces")
        table.add_column("name")
        table.add_column("dimensions", justify="right")
        table.add_column("description")
        table.add_column("papers (arXiv)")
        for n in sp.list_spaces():
            s = sp.get_space(n)
            table.add_row(n, str(len(s)), s.description, ", ".join(_arxiv_ids(s)))
        console.print(table)
        return
    try:
        s = sp.get_space(name)
    except _user_errors() as exc:
        _fail(str(exc))
    table = Table(title=f"{s.name}: {s.description}")
    for col in ("dimension", "kind", "domain", "default", "active when", "paper"):
        table.add_column(col)
    for d in s.dimensions:
        table.add_row(d.label, d.kind, d.domain(), str(d.default_value()), " and ".join(c.describe() for c in d.conditions) or "always", d.paper)
    console.print(table)
    if s.presets:
        console.print(f"presets: {', '.join(sorted(s.presets))}")


@app.command()
def cost(
    space: Optional[str] = typer.Option(None, "--space", help="space name (with --arch)"),
    arch: str = typer.Option("default", "--arch", help="architecture as JSON, a .json file, 'default' or a preset name; missing dimensions take defaults"),
    model_dir: Optional[Path] = typer.Option(None, "--model", help="an exported model directory (abacus export) instead of --space/--arch"),
    device: str = typer.Option("zcu104", "--device", help="device name (hw_cost.list_devices()) or YAML path"),
    style: str = typer.Option("overlay", "--style", help="overlay or dataflow"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="C,H,W of one input (default: --data's, the exported model's, or digits' 1,8,8 with a note)"),
    data: Optional[str] = typer.Option(None, "--data", help="take the input shape and classes from this data set (e.g. digits)"),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="classifier outputs (default: the data set's, else 10)"),
    mult_impl: str = typer.Option("auto", "--mult-impl", help="auto, dsp or lut"),
    pe_array: Optional[str] = typer.Option(None, "--pe-array", help="fixed PE array P_in,P_out (default: sized to the device)"),
    bits: Optional[int] = typer.Option(None, "--bits", help="default bits for layers that do not state theirs"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    space_option: Optional[list[str]] = typer.Option(None, "--space-option", help="KEY=VALUE builder option, as a config's space_options (repeatable)"),
) -> None:
    """Cost one architecture (or an exported model) on an FPGA: per-layer table and totals."""
    import hw_cost
    import spaces as sp

    shape = _int_tuple(input_shape, "--input-shape", "C,H,W", low=1, high=MAX_INPUT_SIDE)
    if shape is not None and shape[0] * shape[1] * shape[2] > MAX_INPUT_VALUES:
        _fail(f"--input-shape: expected at most {MAX_INPUT_VALUES:,} values in C*H*W (one traced input), found {input_shape!r}")
    pe = _int_tuple(pe_array, "--pe-array", "P_in,P_out", low=1, high=65536)
    if num_classes is not None and not 1 <= num_classes <= 1_000_000:
        _fail(f"--num-classes: expected an integer in [1, 1000000], found {num_classes}")
    if bits is not None and not 1 <= bits <= 32:
        _fail(f"--bits: expected an integer in [1, 32], found {bits}")
    for option, value, allowed in (("--style", style, ("overlay", "dataflow")), ("--mult-impl", mult_impl, ("auto", "dsp", "lut"))):
        if value not in allowed:
            _fail(f"{option}: expected one of {', '.join(allowed)}, found {value!r}")
    try:
        dev = hw_cost.get_device(device)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        _fail(f"--device: {exc}")
    from search.cost_inputs import cost_reports

    if model_dir is not None:
        import supernets
        from supernets.export import exported_space, read_arch

        try:
            record = read_arch(model_dir)
            s = exported_space(record, str(model_dir))
            model = supernets.load_exported(model_dir, raw_inputs=False)
        except (FileNotFoundError, ValueError) as exc:
            _fail(f"--model: {exc}")
        shape = shape or tuple(record["task"].get("input_shape", (1, 8, 8)))
        a = record["arch"]
        task = {k: tuple(v) if isinstance(v, list) else v for k, v in record["task"].items()}
        model_for = lambda _a: model  # noqa: E731  (a dynamic net's measured ratios travel with its weights)
    else:
        if space is None:
            _fail("--space: expected a space name (or --model DIR), found nothing")
        try:
            s = sp.get_space(space)
            if space_option:
                from search.config import check_space_options

                opts = _space_options(space_option)
                check_space_options(s, opts)
                s = s.with_options(opts)
            a = _parse_arch(s, arch)
        except ValueError as exc:
            _fail(str(exc))
        except _user_errors() as exc:
            _fail(str(exc))

        if shape is None:
            from search.cost_inputs import input_from_data

            try:
                shape, num_classes, note = input_from_data(data, num_classes)
            except ValueError as exc:
                _fail(str(exc))
            if note:
                typer.echo(note, err=True)
        task = {"num_classes": num_classes if num_classes is not None else 10}

        def model_for(a: dict):
            import supernets
            from supernets.dynamic import assume_costs

            model = supernets.build(s, a, input_shape=shape, **task)
            if assume_costs(model, "target"):
                typer.echo("note: dynamic layers costed at their target (not measured); export a trained model for measured ratios", err=True)
            return model
    # the search's own path: the space's workloads when it describes them, else the network traced
    hardware = dict(device=dev, style=style, mult_impl=mult_impl, pe_array=pe, default_bits=bits)
    try:
        report = cost_reports(s, [a], shape, hardware, task=task, model_for=model_for, rows=True)[0]
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(report.to_json())
    else:
        from hw_cost.render import format_report

        typer.echo(format_report(report))


def _space_options(items: list[str]) -> dict:
    """``["setting=imagenet", "width=2"]`` -> ``{"setting": "imagenet", "width": 2}`` (JSON values, else text)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--space-option: expected KEY=VALUE, found {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


MAX_INPUT_SIDE = 8192
MAX_INPUT_VALUES = 2**24  # a larger input would make the traced forward pass allocate gigabytes


def _int_tuple(text: str | None, option: str, form: str, low: int | None = None, high: int | None = None) -> tuple[int, ...] | None:
    """``"3,32,32"`` -> ``(3, 32, 32)`` with as many integers as ``form`` names, each in
    [low, high] when given; bad input exits 2."""
    if not text:
        return None
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    in_range = all((low is None or v >= low) and (high is None or v <= high) for v in values)
    if len(values) != form.count(",") + 1 or not in_range:
        bounds = f" in [{low}, {high}]" if low is not None and high is not None else ""
        _fail(f"{option}: expected {form} (integers{bounds}), found {text!r}")
    return values


def _console():
    """A terminal-width console, or a wide one when piped (tables stay greppable)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=220, soft_wrap=False)


def _parse_arch(space, text: str) -> dict:
    if text == "default":
        return space.default()
    if text in space.presets:
        return space.preset(text)
    p = Path(text)
    raw = p.read_text() if p.suffix == ".json" and p.is_file() else text
    try:
        arch = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--arch: expected JSON, 'default', a preset ({', '.join(space.presets) or 'none'}) or a .json file, found {text[:80]!r} ({exc.msg})") from None
    return space.validate(space.complete(arch) if isinstance(arch, dict) else arch)


from search.compare import compare_command  # noqa: E402
from search.export import export_command  # noqa: E402
from search.ui import ui_command  # noqa: E402

app.command("compare")(compare_command)
app.command("export")(export_command)
app.command("ui")(ui_command)


def main() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        app()
    finally:
        # Everything is written and closed by now: the interpreter's teardown would still walk
        # every object torch, MLflow and SQLAlchemy made in collections (~2 s measured after a
        # search) only for them to vanish with the process. Frozen, the teardown skips them
        # (``atexit`` handlers, Ray's included, still run).
        gc.freeze()


if __name__ == "__main__":
    main()
