"""The signers against the providers' own published worked examples, and against our verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from alerts.channels.signing import (
    acs3_canonical_query,
    acs3_date,
    acs3_encode,
    acs3_sign,
    dingtalk_sign,
    sha256_hex,
    tc3_sign,
    webhook_signature,
)

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_tc3_reproduces_tencent_cloud_published_example() -> None:
    """Tencent Cloud API 3.0 "Signature v3" (签名方法 v3): the CVM DescribeInstances example with
    SecretKey Gu5t9xGARNpq86cd98joQYCN3EXAMPLE at timestamp 1551113065."""
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    signed = tc3_sign(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        service="cvm",
        timestamp=1551113065,
        headers={"Content-Type": "application/json; charset=utf-8", "Host": "cvm.tencentcloudapi.com"},
        payload=payload,
    )
    assert sha256_hex(payload) == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    assert signed.canonical_request == (
        "POST\n/\n\n"
        "content-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n"
        "content-type;host\n"
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert signed.string_to_sign == (
        "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    assert signed.signature == "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    assert signed.authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


def test_tc3_scope_date_is_utc_not_local() -> None:
    """1551113065 is 2019-02-26 00:44 in Beijing but 2019-02-25 in UTC; the scope takes UTC."""
    signed = tc3_sign(
        secret_id="id", secret_key="key", service="sms", timestamp=1551113065, headers={"host": "h"}, payload=b""
    )
    assert "\n2019-02-25/sms/tc3_request\n" in signed.string_to_sign


def test_tc3_lowercases_signed_header_values() -> None:
    signed = tc3_sign(
        secret_id="id",
        secret_key="key",
        service="sms",
        timestamp=1_700_000_000,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Host": "SMS.TencentCloudAPI.com",
            "X-TC-Action": "SendSms",
        },
        payload=b"{}",
    )
    assert "host:sms.tencentcloudapi.com\nx-tc-action:sendsms\n" in signed.canonical_request
    assert signed.signed_headers == "content-type;host;x-tc-action"


def test_acs3_reproduces_alibaba_cloud_published_example() -> None:
    """Alibaba Cloud "V3版本请求体&签名机制" (help.aliyun.com/zh/sdk/product-overview/
    v3-request-structure-and-signature): the ECS RunInstances example, fixed date and nonce."""
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    signed = acs3_sign(
        method="POST",
        path="/",
        query={"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"},
        headers=headers,
        body=b"",
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
    )
    assert signed.canonical_request == (
        "POST\n/\n"
        "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n"
        "host:ecs.cn-shanghai.aliyuncs.com\nx-acs-action:RunInstances\n"
        f"x-acs-content-sha256:{EMPTY_SHA256}\nx-acs-date:2023-10-26T10:22:32Z\n"
        "x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\nx-acs-version:2014-05-26\n\n"
        "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n"
        f"{EMPTY_SHA256}"
    )
    assert signed.authorization == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_acs3_refuses_a_content_hash_that_is_not_the_body() -> None:
    with pytest.raises(ValueError, match="x-acs-content-sha256"):
        acs3_sign(
            method="POST",
            path="/",
            query={},
            headers={"host": "h", "x-acs-content-sha256": EMPTY_SHA256},
            body=b"x",
            access_key_id="a",
            access_key_secret="b",
        )


def test_acs3_encoding_rules() -> None:
    assert acs3_encode("a b*c~d/é+=") == "a%20b%2Ac~d%2F%C3%A9%2B%3D"
    assert acs3_canonical_query({"b": "", "a": "x y", "TemplateParam": '{"k":"火"}'}) == (
        "TemplateParam=%7B%22k%22%3A%22%E7%81%AB%22%7D&a=x%20y&b="
    )
    assert acs3_date(1_698_315_752_999) == "2023-10-26T10:22:32Z"


def test_dingtalk_sign_is_base64_hmac_of_timestamp_newline_secret() -> None:
    secret = "SEC0123456789abcdef"
    expected = base64.b64encode(
        hmac.new(secret.encode(), b"1700000000000\n" + secret.encode(), hashlib.sha256).digest()
    ).decode()
    assert dingtalk_sign(secret, 1_700_000_000_000) == expected
    assert dingtalk_sign(secret, 1_700_000_000_001) != expected


def test_webhook_signature_is_hex_hmac_of_the_exact_body() -> None:
    body = b'{"id":"n-1"}'
    assert webhook_signature("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert webhook_signature("s3cret", body + b" ") != webhook_signature("s3cret", body)
