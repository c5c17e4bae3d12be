"""The ``test_images`` fixture's object: references of harness images in the registries."""

from __future__ import annotations

from pathlib import Path

from .session import Harness


class TestImages:
    """Pushed harness images: ``ref(name)`` on the plain registry, ``ref(name, auth=True)``.

    Images are built and pushed on first use (``busybox``, ``rich`` and ``multiarch`` together;
    ``large`` alone, only when asked for).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, harness: Harness) -> None:
        self._harness = harness

    def _record(self, name: str) -> dict[str, object]:
        from . import images

        if name not in images.NAMES:
            raise KeyError(f"unknown harness image {name!r}; known: {', '.join(images.NAMES)}")
        if name in images.EAGER:
            return self._harness.ensure_images(*images.EAGER)[name]
        return self._harness.image(name)

    def ref(self, name: str, auth: bool = False) -> str:
        """``127.0.0.1:PORT/wfe/NAME:latest`` on the plain (or authenticated) registry."""
        refs = self._record(name)["refs"]
        assert isinstance(refs, dict)
        return str(refs["auth" if auth else "plain"])

    def digest(self, name: str) -> str:
        """The manifest digest (index digest for ``multiarch``), the same in both registries."""
        return str(self._record(name)["digest"])

    def pinned(self, name: str, auth: bool = False) -> str:
        """``127.0.0.1:PORT/wfe/NAME@sha256:…``."""
        return self.ref(name, auth).rsplit(":", 1)[0] + "@" + self.digest(name)

    def layout(self, name: str) -> Path:
        """The OCI image layout directory the image was pushed from (read-only, please)."""
        return Path(str(self._record(name)["layout"]))
