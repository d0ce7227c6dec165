"""The audit trail, for admins: every non-ticket change with its real actor, and every read of personal data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from alerts import privacy
from api.deps import Allow, Db, Limit
from api.schemas import AuditEventRead, PersonalDataReadRead
from whistle import audit
from whistle.access import Permission, Principal

router = APIRouter()

Auditor = Annotated[Principal, Allow(Permission.AUDIT_READ)]


@router.get("/audit", response_model=list[AuditEventRead])
async def get_audit(
    db: Db,
    user: Auditor,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Limit = 100,
) -> list[AuditEventRead]:
    """Audit records newest first (page with `before` = the last id seen)."""
    found = await audit.list_events(
        db, actor=actor, action=action, target_type=target_type, target_id=target_id, before_id=before, limit=limit
    )
    return [AuditEventRead.model_validate(e) for e in found]


@router.get("/audit/personal-data", response_model=list[PersonalDataReadRead])
async def get_personal_data_reads(
    db: Db, user: Auditor, household_id: str | None = None, actor: str | None = None, limit: Limit = 100
) -> list[PersonalDataReadRead]:
    """Who read which household's contacts, when, on which ticket; newest first."""
    found = await privacy.list_reads(db, household_id=household_id, actor=actor, limit=limit)
    return [PersonalDataReadRead.model_validate(r) for r in found]
