"""The test servers are real, private and local."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from servers import PostgresServer, S3Location, S3Server, s3_client

TCP_LISTEN = "0A"


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of TCP sockets listening on ``port``, from /proc/net/tcp{,6}."""
    found: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == TCP_LISTEN and int(port_hex, 16) == port:
                found.append(address)
    return found


@pytest.mark.postgres
def test_postgres_database_answers_queries(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            conn.execute(sa.text("create table t (x int)"))
            conn.execute(sa.text("insert into t values (41), (1)"))
            assert conn.execute(sa.text("select sum(x) from t")).scalar_one() == 42
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_databases_are_fresh_per_test(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    dbname = postgres_url.rsplit("/", 1)[1]
    assert postgres_url == postgres_server.url_for(dbname)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("select count(*) from pg_tables where schemaname = 'public'")
            ).scalar_one()
            assert tables == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_listens_only_on_loopback(postgres_server: PostgresServer) -> None:
    with postgres_server.connect() as conn:
        row = conn.execute("show listen_addresses").fetchone()
        assert row is not None
        assert row[0] == "127.0.0.1"
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to inspect listening sockets on this OS")
    # 0100007F is 127.0.0.1 as /proc/net/tcp writes it (little-endian hex).
    assert _listening_addresses(postgres_server.port) == ["0100007F"]


@pytest.mark.s3
def test_s3_put_and_get_object(s3_bucket_url: S3Location, s3_server: S3Server) -> None:
    bucket = s3_bucket_url.bucket
    prefix = s3_bucket_url.prefix
    assert s3_bucket_url.url == f"s3://{bucket}/{prefix}"
    assert s3_bucket_url.endpoint_url == s3_server.endpoint_url
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")

    client = s3_client(s3_server.endpoint_url)
    try:
        key = f"{prefix}/hello.txt"
        client.put_object(Bucket=bucket, Key=key, Body=b"hello, world")
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            assert body.read() == b"hello, world"
        finally:
            body.close()
        listed = client.list_objects_v2(Bucket=bucket)
        assert [obj["Key"] for obj in listed["Contents"]] == [key]
    finally:
        client.close()


@pytest.mark.s3
def test_s3_server_listens_only_on_loopback(s3_server: S3Server) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to inspect listening sockets on this OS")
    assert _listening_addresses(s3_server.port) == ["0100007F"]
