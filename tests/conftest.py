"""Session fixtures for the real-daemon harness (tests/harness) and failure-log reporting.

Fixtures are lazy: a daemon starts when the first test that needs it runs and stops at the end of
the session (also on Ctrl-C). With ``WFE_HARNESS`` set, the daemons of ``python -m tests.harness
up`` are reused and left running. When a test that used a daemon fails, the tail of that
daemon's log is attached to the report.
"""

from __future__ import annotations

import signal
from collections.abc import Generator, Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.harness import (
    ContainerdDaemon,
    DockerDaemon,
    Harness,
    HarnessUnavailable,
    RegistryServer,
    TestImages,
)
from tests.harness.processes import tail
from tests.harness.requirements import unavailable

#: Fixture name -> harness service whose log is attached when a test using it fails.
_LOGGED_FIXTURES = {
    "containerd_daemon": "containerd",
    "docker_daemon": "docker",
    "registry": "registry",
    "auth_registry": "auth_registry",
    "test_images": "registry",
}
_HARNESS: list[Harness] = []
#: Every harness of this session, kept for the terminal summary after teardown.
_STARTED: list[Harness] = []


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The session's harness (own temp dir, or reused from ``$WFE_HARNESS``)."""
    h = Harness.from_env()
    _HARNESS.append(h)
    _STARTED.append(h)
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        # A SIGTERM'd pytest then unwinds like Ctrl-C, and teardown still stops the daemons.
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield h
    finally:
        h.close()
        _HARNESS.remove(h)
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _service(h: Harness, name: str) -> dict[str, object]:
    try:
        return h.info(name)
    except HarnessUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def containerd_daemon(harness: Harness) -> ContainerdDaemon:
    """containerd on a private socket: ``.address``, ``.root``, ``.state``, ``.log_path``."""
    return ContainerdDaemon.from_info(_service(harness, "containerd"))


@pytest.fixture(scope="session")
def docker_daemon(harness: Harness) -> DockerDaemon:
    """Docker Engine 20.10 (embedded BuildKit via POST /grpc): ``.host``, ``.socket``."""
    return DockerDaemon.from_info(_service(harness, "docker"))


@pytest.fixture(scope="session")
def registry(harness: Harness) -> RegistryServer:
    """An open registry on ``127.0.0.1:PORT`` (plain HTTP): ``.host``."""
    return RegistryServer.from_info(_service(harness, "registry"))


@pytest.fixture(scope="session")
def auth_registry(harness: Harness) -> RegistryServer:
    """A registry with htpasswd basic auth: ``.host``, ``.username``, ``.password``."""
    return RegistryServer.from_info(_service(harness, "auth_registry"))


@pytest.fixture(scope="session")
def test_images(harness: Harness) -> TestImages:
    """Harness images pushed to both registries: ``.ref(name, auth=False)``, ``.digest(name)``."""
    images = TestImages(harness)
    try:
        images.ref("busybox")
    except HarnessUnavailable as exc:
        unavailable(str(exc))
    return images


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Attach the log tail of every daemon a failing test used to its report."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or not _HARNESS:
        return
    fixtures = set(getattr(item, "fixturenames", ()))
    services = {svc for fix, svc in _LOGGED_FIXTURES.items() if fix in fixtures}
    if "test_images" in fixtures:
        services.add("auth_registry")
    for service in sorted(services):
        for path in _HARNESS[-1].log_paths(service):
            text = tail(Path(path), 80)
            if text:
                report.sections.append((f"{service} log (tail of {path})", text))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print harness startup times (measured, never asserted) and other harness notes."""
    from tests.harness.report import NOTES

    lines = list(NOTES)
    for h in _STARTED:
        services = h.state.get("services", {})
        if services:
            per = ", ".join(
                f"{name} {info.get('ready_seconds', 0):.2f}s" for name, info in services.items()
            )
            mode = "reused from WFE_HARNESS" if not h.owned else "started by this session"
            lines.append(f"daemons {mode}: {per}")
    if lines:
        terminalreporter.section("wfe harness")
        for line in lines:
            terminalreporter.write_line(line)
