"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``.

Installs go through pip with ``constraints.txt``, which pins the CPU build of torch.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
INSTALL = ["-c", "constraints.txt", "-e", ".[all,test]"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole suite, every framework required (as in CI)."""
    session.install(*INSTALL)
    session.install("--no-deps", "-c", "constraints.txt", "-r", "tests/requirements-blocks.txt")  # test-only blocks
    session.env["UPSAMPLE_REQUIRE_BACKENDS"] = "torch,keras,flax,monai,diffusers"
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "upsample", "tests", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("mypy", "-c", "constraints.txt", "-e", ".")
    session.run("mypy")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """``upsample bench`` over every installed backend; pass options after ``--``."""
    session.install(*INSTALL)
    session.run("upsample", "bench", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the site with warnings as errors (its pictures are drawn by ``upsample inspect --png``)."""
    session.install("-c", "constraints.txt", "-e", ".[plot,docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", "-d", "site")
