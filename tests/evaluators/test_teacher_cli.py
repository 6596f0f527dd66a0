"""The teacher-training commands refuse bad input with one line and exit 2, before any data is
built or anything is written (a teacher directory is never overwritten)."""

from __future__ import annotations

import pytest

from evaluators.detection.teacher import main as detection_teacher_main
from evaluators.gan_teacher import main as gan_teacher_main


@pytest.mark.parametrize("main", [gan_teacher_main, detection_teacher_main], ids=["gan", "detection"])
def test_teacher_cli_refuses_bad_data_kwargs_and_an_existing_out(main, tmp_path, capsys):
    assert main(["--out", str(tmp_path / "t"), "--data-kwargs", "[1, 2]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("--data-kwargs: expected a JSON object")
    assert not (tmp_path / "t").exists()

    existing = tmp_path / "taken"
    existing.mkdir()
    assert main(["--out", str(existing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("--out: expected a path that does not exist yet")
    assert list(existing.iterdir()) == []
