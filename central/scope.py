"""Which wards a user may read, and the query filters that enforce it on the server.

Every read of events, evidence, cases and statistics goes through ``Scope``: pages, the JSON API, exports and
live updates alike. An object outside the scope is reported as missing (404), never as forbidden, so an
officer cannot even learn that another ward's event id exists. Admins see every ward, including events of
cameras no admin has placed in a ward yet; everyone else sees exactly the wards assigned to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.orm import Session

from central.db.models import EventRow, Role, UserWardRow
from central.db.wards import CaseRow, EventEvidenceRow


@dataclass(frozen=True)
class Scope:
    """The wards a user reads: ``everything`` (admins) or the set ``wards``."""

    everything: bool
    wards: frozenset[str]

    def allows(self, ward_id: str | None) -> bool:
        return self.everything or (ward_id is not None and ward_id in self.wards)

    def events(self) -> ColumnElement[bool]:
        """A WHERE clause limiting ``EventRow`` to this scope."""
        if self.everything:
            return true()
        if not self.wards:
            return false()
        return EventRow.ward_id.in_(sorted(self.wards))

    def cases(self) -> ColumnElement[bool]:
        if self.everything:
            return true()
        if not self.wards:
            return false()
        return CaseRow.ward_id.in_(sorted(self.wards))


def user_wards(session: Session, username: str) -> frozenset[str]:
    return frozenset(session.scalars(select(UserWardRow.ward_id).where(UserWardRow.username == username)))


def scope_of(session: Session, username: str, role: str) -> Scope:
    if role == Role.ADMIN.value:
        return Scope(everything=True, wards=frozenset())
    return Scope(everything=False, wards=user_wards(session, username))


def event_in_scope(session: Session, scope: Scope, event_id: str) -> EventRow | None:
    """The event when it exists and the user may read it; None otherwise (callers answer 404 either way)."""
    row = session.get(EventRow, event_id)
    if row is None or not scope.allows(row.ward_id):
        return None
    return row


def case_in_scope(session: Session, scope: Scope, case_id: int) -> CaseRow | None:
    row = session.get(CaseRow, case_id)
    if row is None or not scope.allows(row.ward_id):
        return None
    return row


def evidence_in_scope(session: Session, scope: Scope, sha256: str) -> bool:
    """Whether an event the user may read references these evidence bytes."""
    if not scope.everything and not scope.wards:
        return False
    query = (
        select(EventEvidenceRow.event_id)
        .join(EventRow, EventRow.event_id == EventEvidenceRow.event_id)
        .where(EventEvidenceRow.sha256 == sha256, scope.events())
        .limit(1)
    )
    return session.scalar(query) is not None
