"""Engine benchmark: runner throughput, compile time, CLI cold start. Prints figures only.

- 1,000 no-op steps of an in-process executor, in sequence and in one parallel block (steps/s);
- compile + validate of a generated 1,000-step workflow file (shell steps, with references);
- cold start of ``wfe --help`` (median of several fresh subprocesses), next to a bare
  ``python -c pass`` for scale.

Targets (issue 3): >= 2,000 steps/s in both shapes, compile < 0.5 s, ``wfe --help`` < 0.3 s.
Run with ``nox -s bench`` or ``python benchmarks/engine.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from wfe_core.contracts import ExecutionResult, ExecutorPlugin, StepBody, StepContext
from wfe_core.model import Location, Step, Workflow
from wfe_core.plugins import PluginRegistry
from wfe_core.runner import RunOptions, run_workflow

STEPS = 1000
LOC = Location("bench.yaml", 1, 1)


@attrs.frozen
class NoopConfig:
    value: str = ""


class NoopBody(StepBody):
    def __init__(self, config: NoopConfig) -> None:
        self.config = config

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult()


NOOP = ExecutorPlugin("noop", NoopConfig, NoopBody, description="does nothing")


def noop_steps(count: int) -> tuple[Step, ...]:
    return tuple(
        Step(f"s{i}", LOC, type="noop", config=NoopConfig(), raw_config={}) for i in range(count)
    )


def interpolated_steps(count: int) -> tuple[Step, ...]:
    """Steps whose config holds references, so each is interpolated and structured at start."""
    raw = {"value": "${{ inputs.tag }}-${{ env.HOME }}"}
    return tuple(
        Step(f"s{i}", LOC, type="noop", config=NoopConfig(), raw_config=raw) for i in range(count)
    )


def time_run(workflow: Workflow, jobs: int) -> float:
    registry = PluginRegistry([NOOP], discover=False)
    start = time.perf_counter()
    result = asyncio.run(
        run_workflow(workflow, registry, inputs={"tag": "v1"}, options=RunOptions(jobs=jobs))
    )
    elapsed = time.perf_counter() - start
    assert result.ok, result.error
    return elapsed


def bench_runner(repeat: int) -> None:
    sequence = Workflow("seq", LOC, noop_steps(STEPS))
    block = Step("block", LOC, parallel=noop_steps(STEPS))
    parallel = Workflow("par", LOC, (block,))
    interpolated = Workflow("interp", LOC, interpolated_steps(STEPS))
    for label, workflow, jobs in (
        ("sequence", sequence, 4),
        ("sequence, config interpolated", interpolated, 4),
        ("parallel block, jobs=4", parallel, 4),
        ("parallel block, jobs=1000", parallel, 1000),
    ):
        best = min(time_run(workflow, jobs) for _ in range(repeat))
        print(
            f"  {STEPS} no-op steps, {label:<30} {STEPS / best:>9,.0f} steps/s "
            f"({best * 1000:.0f} ms)"
        )


def workflow_text(count: int) -> str:
    lines = [
        "workflow:",
        "  id: big",
        "  version: 1",
        "  inputs:",
        "    tag: {type: string, default: dev}",
        "  steps:",
    ]
    for i in range(count):
        lines += [
            f"    - name: step-{i}",
            "      type: shell",
            "      timeout: 30s",
            "      config:",
            f'        run: "echo ${{{{ inputs.tag }}}} {i}"',
        ]
        if i:
            lines.append(
                f'        env: {{PREV: "${{{{ steps.step-{i - 1}.outputs.exit_code }}}}"}}'
            )
    return "\n".join(lines) + "\n"


def bench_compile(repeat: int) -> None:
    from wfe_core.compiler import compile_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(workflow_text(STEPS))
        size = path.stat().st_size
        registry = PluginRegistry()
        compile_file(path, registry)  # load the shell plugin once, like any warm process
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = compile_file(path, registry)
            times.append(time.perf_counter() - start)
            assert result.ok, [str(d) for d in result.diagnostics[:3]]
        print(
            f"  compile + validate, {STEPS} shell steps ({size / 1024:.0f} KiB): "
            f"median {statistics.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms"
        )


def cold_start(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_cold_start(runs: int) -> None:
    bare = cold_start([sys.executable, "-c", "pass"], runs)
    help_ = cold_start(
        [sys.executable, "-c", "from wfe_core.cli import main; main(['--help'])"], runs
    )
    print(
        f"  wfe --help cold start: median {help_ * 1000:.0f} ms of {runs} runs "
        f"(python -c pass: {bare * 1000:.0f} ms)"
    )
    script = shutil.which("wfe")
    if script is not None:
        installed = cold_start([script, "--help"], runs)
        print(f"  {script} --help (console script): median {installed * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per measurement")
    args = parser.parse_args()
    print("wfe engine benchmark")
    bench_runner(args.repeat)
    bench_compile(args.repeat)
    bench_cold_start(max(args.repeat, 7))


if __name__ == "__main__":
    main()
