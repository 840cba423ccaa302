"""Fixtures for the integration tests.

`workspace` runs a test once per backend pair: SQLite with a local blob folder (the
embedded default) and PostgreSQL with an S3 bucket (the scaled-out set-up), both real
servers started by the tests. Helpers live in ``integration_support``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_support import LOCAL, REMOTE, Backend, s3_options

import modelcycle as mc

BACKENDS = [
    pytest.param(LOCAL, id=LOCAL),
    pytest.param(REMOTE, id=REMOTE, marks=[pytest.mark.postgres, pytest.mark.s3]),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == LOCAL:
        return Backend(LOCAL)
    return Backend(
        REMOTE, request.getfixturevalue("postgres_url"), request.getfixturevalue("s3_bucket_url")
    )


@pytest.fixture
def workspace(backend: Backend, tmp_path: Path) -> Iterator[mc.Workspace]:
    """A fresh workspace on each backend pair."""
    root = tmp_path / "ws"
    if backend.s3 is None:
        ws = mc.Workspace.create(root)
    else:
        ws = mc.Workspace.create(
            root,
            store=backend.store_url,
            blobs=backend.s3.url,
            blobs_options=s3_options(backend.s3.endpoint_url),
        )
    try:
        yield ws
    finally:
        ws.close()
