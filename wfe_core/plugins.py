"""Executor discovery through stevedore, in the ``wfe.executors`` entry point group.

Listing is cheap (entry point metadata only) and loading is lazy and per type: compiling a
workflow that only uses ``shell`` never imports the buildkit or containerd plugins, so grpc is
never imported for it. A plugin that fails to import is remembered as a :class:`PluginError`
naming its distribution, and the other plugins keep working. Two distributions claiming the
same type name is an error naming both, reported whenever that type is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

import attrs

from wfe_core.contracts import ExecutorPlugin

GROUP = "wfe.executors"


@attrs.frozen
class PluginInfo:
    """An entry point found for a type, before anything is imported."""

    name: str
    target: str
    distribution: str
    version: str


@attrs.frozen
class PluginError:
    """Why a type cannot be used: an import failure, a bad object, or a duplicate claim."""

    name: str
    distribution: str
    message: str

    def __str__(self) -> str:
        return f"executor {self.name!r} from {self.distribution}: {self.message}"


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>", ""
    return str(dist.metadata["Name"]), str(dist.version)


def _plugin_bug(info: PluginInfo) -> str:
    """How to get past a plugin that imports but is not usable: the fix is not the user's."""
    return f" (a bug in {info.distribution}: upgrade or uninstall it)"


class PluginRegistry:
    """The installed executors. ``get(type)`` loads one on first use and caches it.

    Tests and embedders may pass ``plugins`` to use in-process plugins instead of (or besides)
    the installed ones; those never touch entry points.
    """

    def __init__(
        self,
        plugins: Iterable[ExecutorPlugin] = (),
        *,
        discover: bool = True,
    ) -> None:
        self._loaded: dict[str, ExecutorPlugin] = {p.name: p for p in plugins}
        self._errors: dict[str, PluginError] = {}
        self._found: dict[str, list[PluginInfo]] = {}
        if discover:
            seen: set[tuple[str, str, str]] = set()
            for ep in metadata.entry_points(group=GROUP):
                dist, version = _distribution_of(ep)
                key = (ep.name, ep.value, dist)
                if key in seen:  # the same distribution visible twice on sys.path
                    continue
                seen.add(key)
                info = PluginInfo(ep.name, ep.value, dist, version)
                self._found.setdefault(ep.name, []).append(info)

    def names(self) -> list[str]:
        """Every type name known, loaded or not, sorted."""
        return sorted(set(self._found) | set(self._loaded))

    def info(self, name: str) -> list[PluginInfo]:
        """The entry points claiming ``name`` (more than one means a conflict)."""
        return list(self._found.get(name, []))

    def get(self, name: str) -> ExecutorPlugin | None:
        """The plugin for ``name``, loading it on first use; None if unknown or broken."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self._errors or name not in self._found:
            return None
        claims = self._found[name]
        if len(claims) > 1:
            owners = " and ".join(f"{c.distribution} ({c.target})" for c in claims)
            self._fail(
                claims[0], f"type {name!r} is claimed by both {owners}; uninstall one of them"
            )
            return None
        plugin = self._load(claims[0])
        if plugin is not None:
            self._loaded[name] = plugin
        return plugin

    def error(self, name: str) -> PluginError | None:
        """Why ``get(name)`` returned None, if it was a load problem."""
        self.get(name)
        return self._errors.get(name)

    def load_all(self) -> Mapping[str, ExecutorPlugin]:
        """Load every plugin (for ``wfe plugins`` and ``wfe schema``); errors are kept."""
        for name in self.names():
            self.get(name)
        return dict(sorted(self._loaded.items()))

    def errors(self) -> list[PluginError]:
        """Load problems seen so far."""
        return list(self._errors.values())

    def _fail(self, info: PluginInfo, message: str) -> None:
        """Remember why ``info.name`` cannot be used (``get`` then returns None for it)."""
        self._errors[info.name] = PluginError(info.name, info.distribution, message)

    def _load(self, info: PluginInfo) -> ExecutorPlugin | None:
        """Import one entry point and check it is an :class:`ExecutorPlugin` of that name (a
        callable returning one is called); None after recording why not."""
        from stevedore import ExtensionManager, NamedExtensionManager

        # stevedore memoises a group's entry points for the life of the process; the listing
        # above is fresh (sys.path may have changed since), so drop the memo before loading.
        ExtensionManager.ENTRY_POINT_CACHE.pop(GROUP, None)

        failures: list[str] = []

        def on_failure(_manager: object, _ep: object, exc: BaseException) -> None:
            failures.append(f"{type(exc).__name__}: {exc}")

        manager: NamedExtensionManager[Any] = NamedExtensionManager(
            GROUP,
            names=[info.name],
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
            name_order=True,
        )
        if failures or not manager.extensions:
            message = failures[0] if failures else "entry point could not be loaded"
            self._fail(
                info,
                f"failed to load {info.target}: {message} "
                f"(reinstall {info.distribution} with its dependencies, or uninstall it)",
            )
            return None
        obj = manager.extensions[0].plugin
        if callable(obj) and not isinstance(obj, ExecutorPlugin):
            try:
                obj = obj()
            except Exception as exc:
                self._fail(info, f"{info.target}() raised {exc!r}{_plugin_bug(info)}")
                return None
        if not isinstance(obj, ExecutorPlugin):
            self._fail(
                info,
                f"{info.target} is a {type(obj).__name__}, not a wfe_core.ExecutorPlugin"
                + _plugin_bug(info),
            )
            return None
        if obj.name != info.name:
            self._fail(
                info,
                f"entry point is named {info.name!r} but the plugin calls itself {obj.name!r}"
                + _plugin_bug(info),
            )
            return None
        return obj


__all__ = ["GROUP", "PluginError", "PluginInfo", "PluginRegistry"]
