"""Validation and runs resolve relative config paths against the same directory, also when
the workflow file is a symlink (its target's directory)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from wfe_core.compiler import compile_file
from wfe_core.contracts import workflow_base_dir
from wfe_core.plugins import PluginRegistry
from wfe_core.runner import run_workflow

WORKFLOW = """\
workflow:
  id: linked
  steps:
    - name: a
      type: shell
      config: {run: pwd, working_dir: data}
"""


def _linked(tmp_path: Path, data_is_dir_in_target: bool) -> Path:
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir(parents=True)
    link.mkdir(parents=True)
    (target / "wf.yaml").write_text(WORKFLOW)
    (link / "wf.yaml").symlink_to(target / "wf.yaml")
    real, decoy = (target, link) if data_is_dir_in_target else (link, target)
    (real / "data").mkdir()
    (decoy / "data").write_text("not a directory\n")
    return link / "wf.yaml"


def test_base_dir_of_a_linked_workflow_is_its_targets_directory(tmp_path: Path) -> None:
    path = _linked(tmp_path, data_is_dir_in_target=True)
    assert workflow_base_dir(path) == (tmp_path / "target").resolve()


def test_validation_checks_the_paths_the_run_uses(tmp_path: Path) -> None:
    registry = PluginRegistry()
    good = compile_file(_linked(tmp_path / "one", data_is_dir_in_target=True), registry)
    assert good.ok, good.diagnostics
    result = asyncio.run(run_workflow(good.select(), registry))
    stdout = result.step("a").outputs["stdout"]
    assert isinstance(stdout, str)
    assert Path(stdout.strip()) == (tmp_path / "one" / "target" / "data").resolve()

    bad = compile_file(_linked(tmp_path / "two", data_is_dir_in_target=False), registry)
    assert [d.code for d in bad.diagnostics] == ["SHELL006"]
