"""Shared fixtures. Servers start once per test session (per xdist worker), lazily."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from servers import PostgresServer, S3Location, S3Server, start_postgres, start_s3


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this test."""
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def s3_bucket_url(s3_server: S3Server) -> S3Location:
    """A fresh, empty bucket for this test: ``.url`` is ``s3://bucket/prefix``."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(bucket)
    return S3Location(bucket=bucket, prefix="modelcycle", endpoint_url=s3_server.endpoint_url)
