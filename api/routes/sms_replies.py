"""SMS reply callbacks of the providers: a worker's reply of the ticket's short code acknowledges it
(alerts.replies). The callback URL carries `?key=` (WHISTLE_SMS_REPLY_KEY), configured in the provider's
console: `https://<public url>/api/v1/sms/replies/tencent?key=…`, `…/aliyun?key=…`."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from alerts.replies import SmsReply, aliyun_replies, apply_reply, tencent_replies
from api.deps import ApiContext, Services, count_failed_sign_in

router = APIRouter()
log = logging.getLogger(__name__)
MAX_BODY = 256 * 1024


async def _replies(ctx: ApiContext, request: Request, key: str | None) -> Any:
    expected = ctx.worker.sms_reply_key
    if expected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "SMS replies are not configured (WHISTLE_SMS_REPLY_KEY)")
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        count_failed_sign_in(ctx, request)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong or missing key")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "too large")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "not JSON") from exc


async def _apply(ctx: ApiContext, replies: list[SmsReply]) -> None:
    for reply in replies:
        result = await apply_reply(ctx.db, ctx.alerts, reply)
        log.info("SMS reply via %s: %s (ticket %s)", reply.provider.value, result.outcome.value, result.ticket_id)


@router.post("/sms/replies/tencent")
async def tencent_reply(ctx: Services, request: Request, key: str | None = None) -> JSONResponse:
    """Tencent Cloud's reply callback: {"mobile", "nationcode", "text", "time", "sign", "extend"}."""
    doc = await _replies(ctx, request, key)
    try:
        replies = tencent_replies(doc)
    except ValueError as exc:
        return JSONResponse({"result": 1, "errmsg": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)
    await _apply(ctx, replies)
    return JSONResponse({"result": 0, "errmsg": "OK"})


@router.post("/sms/replies/aliyun")
async def aliyun_reply(ctx: Services, request: Request, key: str | None = None) -> JSONResponse:
    """Alibaba Cloud's SmsUp push: [{"phone_number", "content", "send_time", "dest_code", "sequence_id"}]."""
    doc = await _replies(ctx, request, key)
    try:
        replies = aliyun_replies(doc)
    except ValueError as exc:
        return JSONResponse({"code": 1, "msg": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)
    await _apply(ctx, replies)
    return JSONResponse({"code": 0, "msg": "接收成功"})
