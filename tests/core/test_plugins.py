"""Executor discovery with throwaway distributions: a ``.dist-info`` directory and a module per
distribution in a temporary directory put on ``sys.path`` (in process) or ``PYTHONPATH``
(for ``wfe`` in a subprocess). No pip, no network."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.wfe_cli import run_wfe
from wfe_core.plugins import PluginRegistry

GOOD = """
import attrs
from wfe_core import ExecutionResult, ExecutorPlugin, StepBody


@attrs.frozen
class Config:
    word: str = "hi"


class Body(StepBody):
    def __init__(self, config):
        self.config = config

    async def run(self, ctx):
        return ExecutionResult(outputs={{"word": self.config.word}})


plugin = ExecutorPlugin("{name}", Config, Body, description="{description}")
"""


def make_dist(
    site: Path, dist: str, module: str, entry_points: dict[str, str], source: str
) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[wfe.executors]\n{lines}")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    suffix = tmp_path.name.replace("-", "_")[-20:]  # unique module names per test
    good, broken = f"goodplug_{suffix}", f"brokenplug_{suffix}"
    make_dist(
        site,
        "good-plug",
        good,
        {"goodtype": f"{good}:plugin"},
        GOOD.format(name="goodtype", description="a good plugin"),
    )
    make_dist(
        site,
        "broken-plug",
        broken,
        {"brokentype": f"{broken}:plugin"},
        "raise ImportError('needs libfoo, which is not installed')\n",
    )
    make_dist(
        site,
        "dup-one",
        f"dupone_{suffix}",
        {"duptype": f"dupone_{suffix}:plugin"},
        GOOD.format(name="duptype", description="one"),
    )
    make_dist(
        site,
        "dup-two",
        f"duptwo_{suffix}",
        {"duptype": f"duptwo_{suffix}:plugin"},
        GOOD.format(name="duptype", description="two"),
    )
    make_dist(
        site,
        "misnamed-plug",
        f"misnamed_{suffix}",
        {"misnamed": f"misnamed_{suffix}:plugin"},
        GOOD.format(name="othername", description="wrong name"),
    )
    make_dist(
        site,
        "notaplugin",
        f"notaplugin_{suffix}",
        {"weird": f"notaplugin_{suffix}:plugin"},
        "plugin = 42\n",
    )
    return site


def test_registry_reports_broken_plugins_with_their_distribution(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(site))
    # stevedore caches each group's entry points for the life of the process, so a registry made
    # after sys.path changed would not see the new distributions (see the report to the lead).
    from stevedore import ExtensionManager

    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    registry = PluginRegistry()
    assert {"goodtype", "brokentype", "duptype", "shell"} <= set(registry.names())
    good = registry.get("goodtype")
    assert good is not None, registry.error("goodtype")
    assert good.description == "a good plugin"
    assert registry.get("shell") is not None
    assert registry.get("brokentype") is None
    broken = registry.error("brokentype")
    assert broken is not None and broken.distribution == "broken-plug"
    assert "needs libfoo" in str(broken) and "broken-plug" in str(broken)
    dup = str(registry.error("duptype"))
    assert "dup-one" in dup and "dup-two" in dup
    assert "calls itself 'othername'" in str(registry.error("misnamed"))
    assert "not a wfe_core.ExecutorPlugin" in str(registry.error("weird"))
    assert registry.info("goodtype")[0].distribution == "good-plug"


def wfe(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_wfe(site, *args)


def test_wfe_plugins_lists_good_ones_and_reports_broken_ones(site: Path) -> None:
    proc = wfe(site, "plugins")
    assert proc.returncode == 1
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "good-plug" in rows["goodtype"] and "a good plugin" in rows["goodtype"]
    assert "wfe-core" in rows["shell"]
    assert "broken-plug" in rows["brokentype"]
    errors = proc.stderr
    assert "executor 'brokentype' from broken-plug" in errors and "needs libfoo" in errors
    assert "dup-one" in errors and "dup-two" in errors
    assert "Traceback" not in errors


def test_broken_plugins_do_not_break_a_run(site: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        textwrap.dedent("""\
        workflow:
          id: mixed
          version: 1
          steps:
            - {name: a, type: goodtype, config: {word: hello}}
            - {name: b, type: shell, config: {run: "echo ${{ steps.a.outputs.word }}"}}
        """)
    )
    proc = wfe(site, "run", str(workflow), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"]["b"]["outputs"]["stdout"] == "hello\n"


def test_using_a_broken_or_claimed_twice_type_is_a_diagnostic(site: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        textwrap.dedent("""\
        workflow:
          id: uses-broken
          version: 1
          steps:
            - {name: a, type: brokentype, config: {}}
            - {name: b, type: duptype, config: {}}
        """)
    )
    proc = wfe(site, "validate", str(workflow))
    assert proc.returncode == 2
    assert f"{workflow}:5:" in proc.stderr and "broken-plug" in proc.stderr
    assert f"{workflow}:6:" in proc.stderr and "dup-one" in proc.stderr
    assert "dup-two" in proc.stderr


def test_wfe_gc_calls_each_plugin_packages_hook(tmp_path: Path) -> None:
    site = tmp_path / "site"
    package = site / "gcplug"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(GOOD.format(name="gctype", description="with gc"))
    (package / "gc.py").write_text(
        "async def collect_garbage():\n    return ['removed container wfe-1', 'removed lease 2']\n"
    )
    info = site / "gcplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gc-plug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[wfe.executors]\ngctype = gcplug:plugin\n")
    proc = wfe(site, "gc")
    assert "gctype: removed container wfe-1\ngctype: removed lease 2\n" in proc.stdout
    assert "Traceback" not in proc.stderr
