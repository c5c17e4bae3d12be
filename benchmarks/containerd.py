"""Benchmark: wfe's native containerd client side by side with ``ctr`` on the same daemon.

Runs against the harness daemons (reused via ``$WFE_HARNESS`` from ``python -m tests.harness up``,
else started for the run and stopped after). Three comparisons, printed, never asserted:

1. a trivial container (``true``): ours in-process vs ``ctr run --rm``;
2. a pull of the ~60 MB four-layer ``large`` image from a cold content store: ours vs
   ``ctr image pull`` (each in a fresh namespace, cleaned with a synchronous GC afterwards);
3. 20 trivial ``containerd`` steps in parallel (asyncio.gather) vs the same 20 in sequence.

Usage: ``python benchmarks/containerd.py [--rounds N]`` (or ``nox -s bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wfe_containerd.client import Client, RunOptions
from wfe_containerd.config import ContainerdConfig
from wfe_containerd.executor import plugin

from tests.harness import Harness, TestImages
from wfe_core.contracts import StepContext


def ctr(address: str, namespace: str, *args: str) -> None:
    subprocess.run(
        ["ctr", "-a", address, "-n", namespace, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def timed_sync(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def show(label: str, ours: list[float], theirs: list[float], their_name: str = "ctr") -> None:
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"{label:<44} wfe {a * 1000:8.1f} ms   {their_name} {b * 1000:8.1f} ms   "
        f"ratio {a / b:5.2f}x  (median of {len(ours)})"
    )


async def clean_namespace(address: str, namespace: str) -> None:
    """Remove every image of ``namespace`` with a synchronous GC: blobs and snapshots go too."""
    from wfe_containerd._pb.services import images_pb2

    async with Client(address, namespace=namespace) as client:
        listed = await client.conn.call(client.conn.images.List, images_pb2.ListImagesRequest())
        for image in listed.images:
            await client.conn.call(
                client.conn.images.Delete, images_pb2.DeleteImageRequest(name=image.name, sync=True)
            )


async def bench(address: str, images: TestImages, rounds: int) -> None:
    busybox = images.ref("busybox")
    ns = f"bench-{secrets.token_hex(3)}"
    # 1. trivial container
    ctr(address, ns, "images", "pull", "--plain-http", busybox)
    async with Client(address, namespace=ns) as client:
        image = await client.ensure_image(busybox)
        await client.run(image, RunOptions(args=["true"]))  # warm-up
        ours = [
            await timed(lambda: client.run(image, RunOptions(args=["true"]))) for _ in range(rounds)
        ]
    theirs = [
        timed_sync(
            lambda: ctr(
                address, ns, "run", "--rm", busybox, f"bench-{secrets.token_hex(4)}", "true"
            )
        )
        for _ in range(rounds)
    ]
    show("trivial container (true)", ours, theirs, "ctr run --rm")

    # 2. cold pull of the large image
    large = images.ref("large")
    ours, theirs = [], []
    for _ in range(max(1, rounds // 2)):
        mine, other = f"{ns}-pull-wfe", f"{ns}-pull-ctr"
        async with Client(address, namespace=mine) as client:
            ours.append(await timed(lambda: client.pull(large)))
        await clean_namespace(address, mine)
        theirs.append(
            timed_sync(lambda ns_=other: ctr(address, ns_, "images", "pull", "--plain-http", large))
        )
        await clean_namespace(address, other)
    show("cold pull of 'large' (~60 MB, 4+1 layers)", ours, theirs, "ctr image pull")

    # 3. 20 steps in parallel vs in sequence
    config = ContainerdConfig(
        image=busybox, command=["true"], containerd_addr=address, namespace=ns
    )
    workspace = Path("/tmp")

    def ctx(i: int) -> StepContext:
        return StepContext(
            run_id="bench",
            workflow_id="bench",
            step_name=f"s{i}",
            attempt=1,
            config=config,
            inputs={},
            outputs={},
            workspace=workspace,
            base_dir=workspace,
        )

    async def one(i: int) -> object:
        return await plugin.create(config).run(ctx(i))  # type: ignore[misc]

    async def sequence() -> None:
        for i in range(20):
            await one(i)

    async def parallel() -> None:
        await asyncio.gather(*(one(i) for i in range(20)))

    seq = [await timed(sequence) for _ in range(max(1, rounds // 3))]
    par = [await timed(parallel) for _ in range(max(1, rounds // 3))]
    show("20 containerd steps: parallel vs sequence", par, seq, "sequence")
    await clean_namespace(address, ns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("ctr") is None:
        print("ctr is not installed (apt-get install containerd)", file=sys.stderr)
        return 2
    harness = Harness.from_env()
    try:
        address = str(harness.info("containerd")["address"])
        images = TestImages(harness)
        print(f"containerd at {address}")
        asyncio.run(bench(address, images, args.rounds))
    finally:
        harness.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
