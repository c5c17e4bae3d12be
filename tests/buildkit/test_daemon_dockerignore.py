"""The ``.dockerignore`` conformance table checked against what the daemon actually received.

Each scenario is built ``FROM scratch`` with ``COPY . /`` and exported locally, so the exported
tree is exactly the filtered context the daemon got. Three builds cover the whole table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wfe_buildkit.client import Client, Export

from tests.buildkit.dockerignore_cases import SCENARIOS, Scenario
from tests.buildkit.trees import make_tree, snapshot

pytestmark = pytest.mark.daemon


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_daemon_receives_exactly_the_table(
    tmp_path: Path, bk_address: str, scenario: Scenario
) -> None:
    context = tmp_path / "ctx"
    make_tree(context, scenario.tree)
    (context / ".dockerignore").write_text(scenario.ignore)
    out = tmp_path / "out"
    async with Client(bk_address) as bk:
        await bk.build(context, exports=[Export.local(out)])
    received = {
        str(Path(dirpath, name).relative_to(out))
        for dirpath, dirs, files in os.walk(out)
        for name in dirs + files
    }
    assert received == set(scenario.expected), (
        f"missing: {sorted(set(scenario.expected) - received)}, "
        f"unexpected: {sorted(received - set(scenario.expected))}"
    )
    # what arrived is byte-identical to the source
    source = snapshot(context)
    for path, entry in snapshot(out).items():
        assert entry == source[path], path
