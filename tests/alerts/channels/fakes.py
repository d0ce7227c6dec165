"""Loopback fakes of the SMS providers' SendSms that verify every signature as the real gateways do (handlers
for tests/alerts/channels/http_server.py): the channel tests and the end-to-end tests send through them."""

from __future__ import annotations

import json
from typing import Any

from tests.alerts.channels.http_server import Request, Response
from tests.alerts.channels.verifiers import verify_acs3, verify_tc3

ALI_ID, ALI_SECRET = "LTAI5tTestKeyId", "aliyun-test-secret-0123456789"
TC_ID, TC_KEY = "AKIDtestSecretId0123456789", "tencent-test-secret-key-0123"


def aliyun_fake(answers: list[dict[str, Any]] | None = None, *, delay_s: float = 0.0) -> Any:
    """dysmsapi SendSms: refuses bad signatures like the real gateway, then answers from `answers`."""
    queue = list(answers or [])

    async def handle(req: Request) -> Response:
        error = verify_acs3(req, ALI_ID, ALI_SECRET)
        if error:
            return Response.json({"Code": error.split(":")[0], "Message": error, "RequestId": "R-1"}, status=400)
        if (req.headers.get("x-acs-action"), req.headers.get("x-acs-version")) != ("SendSms", "2017-05-25"):
            return Response.json({"Code": "InvalidAction.NotFound", "Message": "bad action"}, status=404)
        q = req.query
        missing = [p for p in ("PhoneNumbers", "SignName", "TemplateCode", "TemplateParam") if not q.get(p)]
        if missing:
            return Response.json({"Code": "MissingParameter", "Message": str(missing)}, status=400)
        json.loads(q["TemplateParam"])
        answer = queue.pop(0) if queue else {"Code": "OK", "Message": "OK", "BizId": "900619^0", "RequestId": "R-2"}
        return Response(200, json.dumps(answer).encode(), {"Content-Type": "application/json"}, delay_s)

    return handle


def tencent_fake(statuses: list[dict[str, Any]] | None = None, errors: list[dict[str, str]] | None = None) -> Any:
    """sms SendSms 2021-01-11: refuses bad signatures, then per-number statuses or API errors."""
    status_queue, error_queue = list(statuses or []), list(errors or [])

    async def handle(req: Request) -> Response:
        error = verify_tc3(req, TC_ID, TC_KEY, "sms")
        if error is None and (
            req.headers.get("x-tc-action"),
            req.headers.get("x-tc-version"),
            req.headers.get("x-tc-region"),
        ) != ("SendSms", "2021-01-11", "ap-guangzhou"):
            error = "InvalidAction"
        if error is None and error_queue:
            api_error = error_queue.pop(0)
            return Response.json({"Response": {"Error": api_error, "RequestId": "R"}})
        if error:
            code = error.split(":")[0]
            return Response.json({"Response": {"Error": {"Code": code, "Message": error}, "RequestId": "R"}})
        body = req.json()
        assert set(body) >= {"PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId", "TemplateParamSet"}
        status = {
            "SerialNo": "2640:1230000001",
            "PhoneNumber": body["PhoneNumberSet"][0],
            "Fee": 1,
            "SessionContext": body.get("SessionContext", ""),
            "Code": "Ok",
            "Message": "send success",
            "IsoCode": "CN",
        }
        if status_queue:
            status.update(status_queue.pop(0))
        return Response.json({"Response": {"SendStatusSet": [status], "RequestId": "R"}})

    return handle
