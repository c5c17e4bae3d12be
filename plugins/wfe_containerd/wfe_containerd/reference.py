"""Image reference normalisation, the way Docker does it.

containerd accepts only fully qualified names, so ``busybox`` becomes
``docker.io/library/busybox:latest``. The image record is named by the normalised reference.
"""

from __future__ import annotations

import re

import attrs

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")


class ReferenceError(ValueError):
    """An image reference that cannot be parsed; the message says what is wrong."""


@attrs.frozen
class Reference:
    """A normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host serving the registry API (Docker Hub's API lives on another host)."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(ref: str) -> Reference:
    """Normalise ``ref``: default registry docker.io, ``library/`` for official images,
    tag ``latest`` unless a tag or digest is given."""
    original = ref
    ref = ref.strip()
    if not ref:
        raise ReferenceError("empty image reference")
    digest: str | None = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError(f"invalid digest {digest!r} in image reference {original!r}")
    tag: str | None = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError(f"invalid tag {tag!r} in image reference {original!r}")
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, ref
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise ReferenceError(
                f"invalid repository name {path!r} in image reference {original!r}: use lowercase "
                "letters, digits and separators (. _ -)"
            )
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)
