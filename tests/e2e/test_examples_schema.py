"""Every example workflow validates against the JSON Schema `wfe schema` emits for editors.

(The third-party example needs its executor installed; tests/core/test_third_party.py covers
it.) The schema is taken from the CLI (as yaml-language-server users get it), with every installed
executor's config included, and each `examples/**/*.yaml` workflow file is checked with the
`jsonschema` package. The same files must also compile cleanly with `wfe validate`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WFE = str(Path(sys.executable).with_name("wfe"))


def _workflow_files() -> list[Path]:
    files = []
    for path in sorted((ROOT / "examples").rglob("*.y*ml")):
        if "third_party" in path.parts:  # its executor is installed only by its own test
            continue
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and ({"workflow", "workflows"} & set(data)):
            files.append(path)
    return files


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    out = subprocess.run([WFE, "schema"], capture_output=True, text=True, check=True).stdout
    loaded: dict[str, object] = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def test_examples_exist() -> None:
    names = {p.name for p in _workflow_files()}
    assert "build-and-run.yaml" in names
    assert len(names) >= 3


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_example_validates_against_schema(schema: dict[str, object], path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, "\n".join(errors)


def test_schema_rejects_a_misspelt_key(schema: dict[str, object]) -> None:
    bad = {"workflow": {"id": "x", "steps": [{"name": "a", "type": "shell",
                                               "config": {"runn": "true"}}]}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_example_compiles(path: Path) -> None:
    result = subprocess.run([WFE, "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
