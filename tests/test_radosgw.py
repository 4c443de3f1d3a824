"""The S3 test server (tests/radosgw.py) behaves as S3 where a mock would not: signatures are
checked, presigned URLs expire."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.radosgw import RadosGateway, start_gateway
from tests.waiting import wait_until

BUCKET = "darkroom-test"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RadosGateway]:
    gateway = start_gateway()
    try:
        gateway.create_bucket(BUCKET)
        yield gateway
    finally:
        gateway.stop()


def test_put_then_get(gateway: RadosGateway) -> None:
    s3 = gateway.client()
    s3.put_object(Bucket=BUCKET, Key="a/b.png", Body=b"\x89PNG data", ContentType="image/png")

    got = s3.get_object(Bucket=BUCKET, Key="a/b.png")

    assert got["Body"].read() == b"\x89PNG data"
    assert got["ContentType"] == "image/png"


def test_presigned_get_works_then_expires(gateway: RadosGateway) -> None:
    s3 = gateway.client()
    s3.put_object(Bucket=BUCKET, Key="presigned", Body=b"hello")
    params = {"Bucket": BUCKET, "Key": "presigned"}

    url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"hello"

    short = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
    response = wait_until(
        lambda: (answer := httpx.get(short)).status_code != 200 and answer,
        "the presigned URL to expire",
        timeout=10,
        interval=0.25,
    )
    assert response.status_code == 403
    assert "AccessDenied" in response.text


def test_wrong_secret_is_refused(gateway: RadosGateway) -> None:
    s3 = gateway.client(secret_key="not-" + gateway.secret_key)

    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket=BUCKET, Key="a/b.png")

    assert raised.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_missing_bucket(gateway: RadosGateway) -> None:
    with pytest.raises(ClientError) as raised:
        gateway.client().head_bucket(Bucket="no-such-bucket")

    assert raised.value.response["Error"]["Code"] == "404"


def test_env_names_the_server(gateway: RadosGateway) -> None:
    assert gateway.env() == {
        "AWS_ENDPOINT_URL": gateway.endpoint,
        "AWS_ACCESS_KEY_ID": gateway.access_key,
        "AWS_SECRET_ACCESS_KEY": gateway.secret_key,
        "AWS_REGION": "us-east-1",
    }
