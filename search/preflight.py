"""Checks of a loaded config that need more than the config itself, run by the CLI before a
search starts, so a wrong data path or an objective without a reference point is one line and
exit 2, not a traceback after the run directory and the MLflow parent exist."""

from __future__ import annotations

from search.errors import ConfigError


def check_data(cfg) -> None:
    """Build the data module once: constructors check paths and read headers (cheap), data loads later."""
    import evaluators

    try:
        evaluators.get_datamodule(cfg.evaluator.data, seed=cfg.seed, batch_size=cfg.evaluator.batch_size, **cfg.evaluator.data_kwargs)
    except (ValueError, TypeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("evaluator.data_kwargs", f"options data set {cfg.evaluator.data!r} accepts, pointing at its files", first) from None


def check_reference(cfg) -> None:
    """Every objective needs a reference point the problem fixes (search.problem) or the config gives."""
    from search.problem import undeclarable

    missing = undeclarable(cfg.objective_names, cfg.reference_point)
    if missing:
        raise ConfigError(f"reference_point.{missing[0]}", f"a value: the problem fixes no hypervolume bound for {missing[0]}", "none")


def preflight(cfg) -> None:
    check_reference(cfg)
    check_data(cfg)
