"""Who may do what, and over which part of the street: roles, permissions, scope, the caller.

Two questions are asked of every request. *May this role do this at all?* (a permission of the
role; no: 403). *Is this thing within the caller's part of the street?* (its scope, applied as a
WHERE in the query that finds the thing; no: 404, so what a caller may not see does not exist for
them). The endpoint × role table in docs/PERMISSIONS.md is the contract; `ROLE_PERMISSIONS` is it
in code, and one test walks the table against a running service.

Scope: `admin`, `ops_center`, `screen` and `integration` see every grid (or, given a `grid_id`, that
grid and the grids below it); a `street_center` worker without a grid sees the whole street; every
other worker sees their grid's subtree (a grid leader's comprehensive grid and its micro-grids, a
grid worker's micro-grid) plus the tickets assigned to them or that they were notified about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from whistle.domain import WorkerRole


class Role(StrEnum):
    ADMIN = "admin"
    OPS_CENTER = "ops_center"
    SCREEN = "screen"
    INTEGRATION = "integration"
    GRID_WORKER = WorkerRole.GRID_WORKER.value
    GRID_LEADER = WorkerRole.GRID_LEADER.value
    STREET_CENTER = WorkerRole.STREET_CENTER.value
    PROPERTY = WorkerRole.PROPERTY.value
    ELEVATOR_MAINTAINER = WorkerRole.ELEVATOR_MAINTAINER.value


# Named accounts are created (`whistle users add`, POST /api/v1/users); workers come from the registry.
ACCOUNT_ROLES = frozenset({Role.ADMIN, Role.OPS_CENTER, Role.SCREEN, Role.INTEGRATION})
WORKER_ROLES = frozenset(Role(r.value) for r in WorkerRole)
BOOTSTRAP_ADMIN = "admin"  # the identity of WHISTLE_ADMIN_TOKEN (CONTRACT.md §4); no account may take the id


class Permission(StrEnum):
    """One kind of thing a caller may do; endpoints name the permission they need."""

    ALARMS_READ = "alarms.read"
    TICKETS_READ = "tickets.read"
    TICKETS_ACT = "tickets.act"  # ack, arrive, resolve, comment
    TICKETS_DISPATCH = "tickets.dispatch"  # reassign, transfer, close
    TICKETS_CONTACTS = "tickets.contacts"  # a household's contacts on a ticket (every read logged)
    LIVE = "live"
    SILENCES_READ = "silences.read"
    SILENCES_WRITE = "silences.write"
    SILENCES_LIFE_SAFETY = "silences.life_safety"  # silence smoke.fire / elevator.trapped (flag, reason, max)
    ROSTERS_READ = "rosters.read"
    ROSTERS_WRITE = "rosters.write"
    HOUSEHOLDS_READ = "households.read"
    ABSENCES = "absences"
    HOUSEHOLDS_ERASE = "households.erase"
    REGISTRY_WRITE = "registry.write"  # import, retire, remove a tag
    DEVICES_READ = "devices.read"
    DEVICES_USAGE = "devices.usage"
    DEVICES_MANAGE = "devices.manage"  # retire, broker credentials
    DEAD_LETTERS_READ = "dead_letters.read"
    WORKERS_READ = "workers.read"
    WORKERS_PHONES = "workers.phones"  # workers' phones unmasked
    WORKERS_OFFBOARD = "workers.offboard"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"
    SCREEN_READ = "screen.read"  # the map, counters, trends, the ticker, a building's card (of the caller's grids)
    ASSESSMENT_READ = "assessment.read"  # the grids' and workers' assessment tables and their exports
    JOBS_RUN = "jobs.run"  # ask for the household job over chosen days (after an import, a backfill)
    PIPELINE_READ = "pipeline.read"  # how far behind each stage is
    NOTIFICATIONS_OWN = "notifications.own"  # one's own notifications, their receipts, one's push subscriptions


P = Permission
_READ_TICKETS = {P.ALARMS_READ, P.TICKETS_READ, P.LIVE, P.SILENCES_READ, P.ROSTERS_READ, P.SCREEN_READ}
_FIELD = _READ_TICKETS | {P.TICKETS_ACT, P.TICKETS_CONTACTS, P.HOUSEHOLDS_READ, P.DEVICES_READ, P.NOTIFICATIONS_OWN}
_DISPATCH = _FIELD | {
    P.TICKETS_DISPATCH,
    P.SILENCES_WRITE,
    P.ROSTERS_WRITE,
    P.ABSENCES,
    P.WORKERS_READ,
    P.WORKERS_PHONES,
    P.ASSESSMENT_READ,
}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPS_CENTER: frozenset(
        _DISPATCH | {P.SILENCES_LIFE_SAFETY, P.DEVICES_USAGE, P.DEAD_LETTERS_READ, P.JOBS_RUN, P.PIPELINE_READ}
    ),
    Role.SCREEN: frozenset(_READ_TICKETS | {P.WORKERS_READ, P.ASSESSMENT_READ}),
    Role.INTEGRATION: frozenset(
        {
            P.REGISTRY_WRITE,
            P.DEVICES_READ,
            P.DEVICES_USAGE,
            P.DEVICES_MANAGE,
            P.DEAD_LETTERS_READ,
            P.JOBS_RUN,
            P.PIPELINE_READ,
        }
    ),
    Role.STREET_CENTER: frozenset(_DISPATCH | {P.SILENCES_LIFE_SAFETY}),
    Role.GRID_LEADER: frozenset(_DISPATCH),
    Role.GRID_WORKER: frozenset(_FIELD | {P.ABSENCES}),
    Role.PROPERTY: frozenset(_FIELD),
    Role.ELEVATOR_MAINTAINER: frozenset(_FIELD),
}

# Contacts of a household: the roles that read them on any ticket in scope; the others only on their own.
CONTACTS_ANY_TICKET = frozenset({Role.ADMIN, Role.OPS_CENTER, Role.STREET_CENTER})
# Roles that keep their room above the ordinary write rate limit.
PRIVILEGED_RATE = frozenset({Role.ADMIN, Role.INTEGRATION})


@dataclass(frozen=True, slots=True)
class Scope:
    """The part of the street a caller sees: every grid, or a grid subtree plus what is theirs.

    `grid_ids` is the subtree (computed from `grids.parent_id` when the caller signs in); `user_id`
    brings in the tickets assigned to that user or that they were notified about."""

    all_grids: bool
    grid_ids: tuple[str, ...] = ()
    user_id: str | None = None

    @classmethod
    def everything(cls) -> Scope:
        return cls(all_grids=True)

    def covers_grid(self, grid_id: str | None) -> bool:
        """Whether a thing located in `grid_id` is in scope by its place (assignments aside)."""
        return self.all_grids or (grid_id is not None and grid_id in self.grid_ids)

    def grid_sql(self, column: str) -> tuple[str, list[Any]]:
        """A SQL condition (and its parameters) keeping rows whose `column` is a grid in scope."""
        if self.all_grids:
            return "TRUE", []
        return f"{column} = ANY(%s)", [list(self.grid_ids)]

    def sees_event(self, event: Mapping[str, Any]) -> bool:
        """Whether a live-feed event (alarm or ticket change) concerns this scope."""
        if self.all_grids:
            return True
        for key in ("grid_id", "from_grid_id"):
            grid = event.get(key)
            if isinstance(grid, str) and grid in self.grid_ids:
                return True
        if self.user_id is not None:
            for key in ("assignee_id", "from_assignee_id", "recipient_id"):
                if event.get(key) == self.user_id:
                    return True
        return False


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: who, in which role, over which scope, and how they proved it."""

    id: str
    role: Role
    name: str
    grid_id: str | None
    scope: Scope
    via: str = "token"  # "token", "session", "admin_token"

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    @property
    def grids(self) -> tuple[str, ...] | None:
        """The grids the caller's place-bound reads are limited to; None: every grid."""
        return None if self.scope.all_grids else self.scope.grid_ids

    @property
    def masked(self) -> bool:
        """Whether residents' and workers' personal data reaches this caller only masked."""
        return self.role is Role.SCREEN

    @property
    def is_worker(self) -> bool:
        return self.role in WORKER_ROLES

    @property
    def contacts_on_any_ticket(self) -> bool:
        return self.role in CONTACTS_ANY_TICKET


def bootstrap_admin() -> Principal:
    """The principal of WHISTLE_ADMIN_TOKEN: an admin over everything, recorded as `admin`."""
    return Principal(BOOTSTRAP_ADMIN, Role.ADMIN, "admin", None, Scope.everything(), via="admin_token")
