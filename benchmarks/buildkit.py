"""Benchmark: uploading a large build context with wfe's native BuildKit client.

A context of 10,000 files and about 180 MB (9,990 small files of 4-16 KiB in 100 directories plus
ten 8 MiB files) is built with ``FROM scratch`` / ``COPY . /ctx`` (no export, so the figures are
the upload) three times against the same daemon:

1. cold: a fresh session shared key, so the daemon has nothing cached for this directory;
2. warm: same key, nothing changed; the daemon should request no file at all;
3. one file changed: only that file's bytes should be sent, plus the STAT traffic.

Printed per phase: wall time, bytes sent on the session (all packets), file bytes sent, and the
client's peak RSS so far (``ru_maxrss``). Nothing is asserted. Targets from issue 5: peak RSS under
150 MB; the one-file rebuild sends that file plus stat traffic and no more.

Runs against ``$BUILDKIT_HOST`` if set, else the harness Docker Engine (reused via ``$WFE_HARNESS``
from ``python -m tests.harness up``, else started for the run and stopped after).
Usage: ``python benchmarks/buildkit.py [--files N] [--keep DIR]`` (or ``nox -s bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wfe_buildkit.client import Client
from wfe_buildkit.dockerfile import DockerfileBuild, solve_opt

from tests.harness import Harness

SMALL_MIN, SMALL_MAX = 4 * 1024, 16 * 1024
BIG_SIZE = 8 * 1024 * 1024


def make_context(root: Path, files: int) -> tuple[int, Path]:
    """Write the context; returns total bytes and the path of a small file to edit later."""
    rng = random.Random(42)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx\n")
    total = 0
    big = min(10, files)
    block = os.urandom(BIG_SIZE)
    for i in range(big):
        path = root / "big" / f"blob{i:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(block[i:] + block[:i])
        total += BIG_SIZE
    edit = root
    for i in range(files - big - 1):
        directory = root / f"d{i % 100:03d}"
        directory.mkdir(exist_ok=True)
        size = rng.randint(SMALL_MIN, SMALL_MAX)
        path = directory / f"f{i:05d}.txt"
        path.write_bytes(rng.randbytes(size))
        total += size
        edit = path
    return total, edit


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def build(client: Client, context: Path, key: str) -> tuple[float, float, object]:
    opt = attrs.evolve(solve_opt(DockerfileBuild(context=context), []), shared_key=key)
    start, cpu = time.perf_counter(), cpu_seconds()
    result = await client.solve(opt)
    return time.perf_counter() - start, cpu_seconds() - cpu, result.stats


def report(label: str, seconds: float, cpu: float, stats: object) -> None:
    sent = getattr(stats, "bytes_sent", 0)
    file_bytes = getattr(stats, "file_bytes_sent", 0)
    files = getattr(stats, "files_sent", 0)
    entries = getattr(stats, "stats_sent", 0)
    print(
        f"{label:<18} {seconds:6.2f} s (client CPU {cpu:5.2f} s)   sent {sent / 1e6:9.2f} MB   "
        f"files {file_bytes / 1e6:7.2f} MB ({files} files)   "
        f"stats {entries}   peak RSS {peak_rss_mb():5.1f} MB"
    )


async def run(address: str, context: Path, edit: Path) -> None:
    key = "bench-" + secrets.token_hex(8)
    async with Client(address) as client:
        await client.ping()
        seconds, cpu, stats = await build(client, context, key)
        report("cold", seconds, cpu, stats)
        seconds, cpu, stats = await build(client, context, key)
        report("warm (unchanged)", seconds, cpu, stats)
        data = edit.read_bytes()
        edit.write_bytes(data[::-1] + b"!")
        seconds, cpu, stats = await build(client, context, key)
        report("one file changed", seconds, cpu, stats)
        print(f"{'':<18} (the changed file is {len(data) + 1} bytes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the context here and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="wfe-bench-bk-"))
    harness = None
    try:
        start = time.perf_counter()
        total, edit = make_context(workdir / "context", args.files)
        print(
            f"context: {args.files} files, {total / 1e6:.1f} MB "
            f"(written in {time.perf_counter() - start:.1f} s)"
        )
        address = os.environ.get("BUILDKIT_HOST")
        if not address:
            harness = Harness.from_env()
            address = f"docker+unix://{harness.info('docker')['socket']}"
        print(f"daemon: {address}")
        asyncio.run(run(address, workdir / "context", edit))
    finally:
        if harness is not None:
            harness.close()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
