"""Every shipped example config passes the same checks ``abacus search`` runs before it writes
anything (schema, values, reference point, resources, data, sampler), so an example a user
copies cannot fail on a renamed key or a removed option. Nothing is trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.config import load_config
from search.preflight import prepare

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 6, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_passes_every_check_before_a_search(path, tmp_path):
    cfg = load_config(path, out=str(tmp_path / "run"))
    prepared = prepare(cfg, resume=False)
    assert prepared.space is not None and prepared.input_shape
    assert not (tmp_path / "run").exists()  # the checks wrote nothing
