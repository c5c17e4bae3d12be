"""The harness: daemons under one temporary directory, started on demand, stopped by PID.

One :class:`Harness` owns a directory ``/tmp/wfe-h-XXXX``. Services start lazily (the first
fixture that needs one starts it) and in parallel when several are asked for at once: processes
are spawned from the calling thread, readiness is awaited in worker threads. The state file
(``harness.json``) records PIDs, addresses and pushed images, so ``WFE_HARNESS=<state file>``
lets another process reuse the daemons without owning them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import images, processes
from .containerd import Containerd, DockerContainerd
from .dockerd import Dockerd
from .mounts import unmount_all
from .paths import DIR_PREFIX, STATE_FILE
from .reclaim import reclaim
from .registry import Registry
from .requirements import SERVICE_NEEDS, HarnessUnavailable, describe_missing, missing
from .service import Service
from .teardown import (
    kill_containers,
    remove_sockets,
    shim_processes,
    shim_sockets,
    stop_tree,
    sweep_stale,
)

__all__ = ["DIR_PREFIX", "STATE_FILE", "Harness", "shim_sockets", "stop_tree", "sweep_stale"]

SERVICES = ("containerd", "docker", "registry", "auth_registry")
#: Services started along with another (before it in the same parallel batch).
DEPENDENCIES = {"docker": ("docker_containerd",)}


def _new_service(name: str, base: Path) -> Service:
    if name == "containerd":
        return Containerd(base)
    if name == "docker_containerd":
        return DockerContainerd(base)
    if name == "docker":
        return Dockerd(base)
    if name == "registry":
        return Registry(base)
    if name == "auth_registry":
        return Registry(base, auth=True)
    raise KeyError(f"unknown harness service {name!r}; known: {', '.join(SERVICES)}")


def _needs(name: str) -> tuple[str, ...]:
    if name == "docker_containerd":
        name = "containerd"
    return SERVICE_NEEDS["dockerd" if name == "docker" else name]


def _with_dependencies(names: tuple[str, ...]) -> list[str]:
    ordered: list[str] = []
    for name in names:
        for dep in DEPENDENCIES.get(name, ()):
            if dep not in ordered:
                ordered.append(dep)
        if name not in ordered:
            ordered.append(name)
    return ordered


class Harness:
    """Daemons and images under one directory; owns them unless reused from a state file."""

    def __init__(self, base: Path, *, owned: bool, tie_to_parent: bool) -> None:
        self.base = base
        self.owned = owned
        self.tie_to_parent = tie_to_parent
        self.state_path = base / STATE_FILE
        self.state: dict[str, Any] = {"version": 1, "base": str(base), "services": {}, "images": {}}
        self._objects: dict[str, Service] = {}
        self._failures: dict[str, str] = {}
        self._lock = threading.RLock()
        self._closed = False

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(cls, *, tie_to_parent: bool = True, mode: str = "pytest") -> Harness:
        """A fresh harness directory owned by this process (after sweeping crashed ones)."""
        sweep_stale()
        base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        os.chmod(base, 0o755)  # container processes (non-root users too) traverse it
        harness = cls(base, owned=True, tie_to_parent=tie_to_parent)
        harness.state.update(mode=mode, owner_pid=os.getpid(), created=time.time())
        harness.write_state()
        return harness

    @classmethod
    def from_state(cls, path: Path | str) -> Harness:
        """Reuse the daemons of ``python -m tests.harness up`` (not stopped at our end)."""
        path = Path(path)
        data = json.loads(path.read_text())
        harness = cls(Path(data["base"]), owned=False, tie_to_parent=False)
        harness.state_path = path
        harness.state = data
        for name, info in data.get("services", {}).items():
            pid = info.get("pid")
            if pid is None or not processes.pid_alive(int(pid)):
                harness._failures[name] = (
                    f"{name} from WFE_HARNESS={path} (pid {pid}) is not running; "
                    "run `python -m tests.harness up` again or unset WFE_HARNESS"
                )
        return harness

    @classmethod
    def from_env(cls) -> Harness:
        """Reuse ``$WFE_HARNESS`` when set, else create a harness owned by this process."""
        reuse = os.environ.get("WFE_HARNESS")
        if reuse:
            return cls.from_state(reuse)
        return cls.create()

    # ----------------------------------------------------------------- state file

    @contextlib.contextmanager
    def _state_lock(self) -> Iterator[None]:
        """Serialise state-file updates between processes sharing one harness."""
        with open(self.base / ".state.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _reload_images(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            on_disk = json.loads(self.state_path.read_text())
            self.state["images"] = {**on_disk.get("images", {}), **self.state["images"]}

    def write_state(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_path)

    # ----------------------------------------------------------------- services

    def ensure(self, *names: str) -> dict[str, dict[str, Any]]:
        """Start the named services that are not running yet, in parallel; return their info.

        Raises :class:`HarnessUnavailable` when a binary is missing or a daemon fails to start
        (with its log tail); a failure is remembered so later tests fail fast.
        """
        with self._lock:
            if self._closed:
                raise HarnessUnavailable("the harness has already been stopped")
            running = self.state["services"]
            wanted = _with_dependencies(tuple(n for n in names if n not in running))
            for name in [*names, *wanted]:
                if name in self._failures:
                    raise HarnessUnavailable(self._failures[name])
                absent = missing(*_needs(name))
                if absent:
                    raise HarnessUnavailable(f"{name}: {describe_missing(absent)}")
            todo = [n for n in wanted if n not in running]
            started: list[Service] = []
            for name in todo:
                service = _new_service(name, self.base)
                self._objects[name] = service
                service.spawn(tie_to_parent=self.tie_to_parent)
                started.append(service)
            errors: dict[str, str] = {}

            def wait(service: Service) -> None:
                try:
                    service.wait_ready()
                except Exception as exc:
                    errors[service.name] = str(exc)

            if len(started) == 1:
                wait(started[0])
            elif started:
                with ThreadPoolExecutor(max_workers=len(started)) as pool:
                    list(pool.map(wait, started))
            for service in started:
                if service.name in errors:
                    self._failures[service.name] = errors[service.name]
                    self._stop_service(service)
                    continue
                info = service.info()
                info["ready_seconds"] = round(service.ready_after, 3)
                self.state["services"][service.name] = info
            if started and self.owned:
                with self._state_lock():
                    self._reload_images()
                    self.write_state()
            if errors:
                raise HarnessUnavailable("\n\n".join(errors.values()))
            return {n: self.state["services"][n] for n in names}

    def info(self, name: str) -> dict[str, Any]:
        return self.ensure(name)[name]

    # ----------------------------------------------------------------- images

    def image(self, name: str) -> dict[str, Any]:
        """Build (cached) and push image ``name`` to both registries; returns its record.

        The record holds ``digest``, ``layout`` and ``refs`` (``plain`` and ``auth``).
        """
        return self.ensure_images(name)[name]

    def ensure_images(self, *names: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            if "images" in self._failures:
                raise HarnessUnavailable(self._failures["images"])
            absent = missing(*SERVICE_NEEDS["images"])
            if absent:
                raise HarnessUnavailable(f"test images: {describe_missing(absent)}")
            regs = self.ensure("registry", "auth_registry")
            with self._state_lock():
                self._reload_images()
                todo = [n for n in dict.fromkeys(names) if n not in self.state["images"]]
                if todo:
                    try:
                        self._build_and_push(todo, regs["registry"], regs["auth_registry"])
                    except Exception as exc:
                        self._failures["images"] = str(exc)
                        raise HarnessUnavailable(str(exc)) from exc
                    self.write_state()
            return {n: self.state["images"][n] for n in names}

    def _build_and_push(
        self, names: list[str], plain: dict[str, Any], auth: dict[str, Any]
    ) -> None:
        cache = self.base / "images"
        cache.mkdir(exist_ok=True)
        tmp = self.base / "tmp"
        tmp.mkdir(exist_ok=True)
        base_layer = images.busybox_layer()
        creds = (auth["username"], auth["password"])
        jobs: list[tuple[str, Path, str, str, tuple[str, str] | None]] = []
        records: dict[str, dict[str, Any]] = {}
        for name in names:
            layout = cache / name
            digest = images.build_layout(name, layout, base_layer)
            records[name] = {"digest": digest, "layout": str(layout), "refs": {}}
            jobs.append((name, layout, "plain", plain["host"], None))
            jobs.append((name, layout, "auth", auth["host"], creds))

        def push(job: tuple[str, Path, str, str, tuple[str, str] | None]) -> None:
            name, layout, kind, host, job_creds = job
            ref = images.push(layout, name, host, creds=job_creds, tmpdir=tmp)
            records[name]["refs"][kind] = ref

        with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
            list(pool.map(push, jobs))
        self.state["images"].update(records)

    # ----------------------------------------------------------------- teardown

    def log_paths(self, name: str) -> list[Path]:
        """Log files of service ``name`` and of the services it depends on."""
        paths: list[Path] = []
        for part in _with_dependencies((name,)):
            info = self.state["services"].get(part)
            if info is not None:
                paths.append(Path(info["log_path"]))
            elif part in self._objects:
                paths.append(self._objects[part].log_path)
        return paths

    def close(self) -> None:
        """Stop what this process owns; remove the directory when the harness is ours."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self.owned:
                # Reuse mode: only services this process had to start itself.
                for name in list(self._objects):
                    self._stop_service(self._objects.pop(name))
                return
            stop_tree(self.base, dict(self.state["services"]), self._objects)

    def _stop_service(self, service: Service) -> None:
        if service.pid is not None and processes.pid_alive(service.pid):
            reclaim({service.name: service.info()})
        sockets = shim_sockets(service.dir)
        strays = shim_processes(service.dir)
        kill_containers(service.dir)
        service.stop()
        processes.kill(p for p in strays if p.is_running())
        processes.kill(processes.processes_mentioning(str(service.dir)))
        unmount_all(service.dir)
        remove_sockets(sockets)
