"""The ``.dockerignore`` conformance table: contexts, ignore files and what must arrive.

Each scenario is a context tree, a ``.dockerignore`` and the exact set of paths the daemon must
receive (checked against the exported tree of a ``FROM scratch`` / ``COPY . /`` build in
test_daemon_dockerignore.py, and against the client's walk in test_fstree.py). Expected sets were
derived by hand from moby/patternmatcher and fsutil's filter rules, not from our implementation.
Together the scenarios cover ``*``, ``**`` (leading, middle, trailing), ``?``, ``[...]``, ``!``
re-includes (literal and wildcard), leading and trailing ``/``, comments, and the Dockerfile and
``.dockerignore`` files themselves.
"""

from __future__ import annotations

import attrs

DOCKERFILE = "FROM scratch\nCOPY . /\n"


@attrs.frozen
class Scenario:
    name: str
    tree: dict[str, object]
    ignore: str
    expected: frozenset[str]


A = Scenario(
    name="mixed",
    tree={
        "Dockerfile": DOCKERFILE,
        "a.tmp": "t",
        "sub/a.tmp": "t",
        "root-only.txt": "r",
        "sub/root-only.txt": "r",
        "x.log": "l",
        "sub/deep/y.log": "l",
        "build/out.bin": "b",
        "build/keep.txt": "k",
        "docs/draft0.md": "d",
        "docs/a/b/draft1.md": "d",
        "docs/final.md": "f",
        "src/a.c": "c",
        "src/ab.c": "c",
        "a.md": "m",
        "b.md": "m",
        "c.md": "m",
        "vendor/lib.txt": "v",
        "vendor/important/x.txt": "v",
        "secret.env": "s",
        "secret-ok.txt": "s",
        "cache/a": "c",
        "cache/sub/b": "c",
        "nested/deep/z.txt": "z",
        "nested/keep.txt": "k",
        "link-to-build": ("link", "build/out.bin"),
        "empty": None,
        "exec.sh": ("exec", "#!/bin/sh\necho hi\n"),
        "with space.txt": "s",
        "a-b/f": "1",
        "a/b": "2",
    },
    ignore="\n".join(
        [
            "# a comment line",
            "*.tmp",
            "/root-only.txt",
            "**/*.log",
            "build/",
            "!build/keep.txt",
            "docs/**/draft*",
            "src/?.c",
            "[ab].md",
            "vendor",
            "!vendor/important/**",
            "secret*",
            "!secret-ok.txt",
            "cache/*",
            "Dockerfile",
            ".dockerignore",
            "nested/deep/",
            "",
        ]
    ),
    expected=frozenset(
        {
            "sub",
            "sub/a.tmp",
            "sub/root-only.txt",
            "sub/deep",
            "build",
            "build/keep.txt",
            "docs",
            "docs/a",
            "docs/a/b",
            "docs/final.md",
            "src",
            "src/ab.c",
            "c.md",
            "vendor",
            "vendor/important",
            "vendor/important/x.txt",
            "secret-ok.txt",
            "cache",
            "nested",
            "nested/keep.txt",
            "link-to-build",
            "empty",
            "exec.sh",
            "with space.txt",
            "a-b",
            "a-b/f",
            "a",
            "a/b",
        }
    ),
)

B = Scenario(
    name="allowlist",
    tree={
        "Dockerfile": DOCKERFILE,
        "a.py": "a",
        "b.txt": "b",
        "pkg/x.py": "x",
        "pkg/readme": "r",
        "pkg/sub/y.py": "y",
        "other/z.py": "z",
    },
    ignore="*\n!*.py\n!pkg/**/*.py\n",
    expected=frozenset({"a.py", "pkg", "pkg/x.py", "pkg/sub", "pkg/sub/y.py"}),
)

C = Scenario(
    name="slashes",
    tree={
        "Dockerfile": DOCKERFILE,
        "logs/a": "a",
        "sub/logs/b": "b",
        "node_modules/x": "x",
        "a/b/node_modules/y": "y",
        "tmp/t": "t",
        "tmp/keep/k": "k",
    },
    ignore="/logs/\n**/node_modules\ntmp/**\n!tmp/keep/\n",
    expected=frozenset(
        {
            "Dockerfile",
            ".dockerignore",
            "sub",
            "sub/logs",
            "sub/logs/b",
            "a",
            "a/b",
            "tmp",
            "tmp/keep",
            "tmp/keep/k",
        }
    ),
)

SCENARIOS = (A, B, C)
