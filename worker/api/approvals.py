"""Approvals, signals and spend limits: the person in the loop, over HTTP."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy.orm import Session

from db.repositories import ApprovalRepository
from db.states import ApprovalStatus
from db.types import utcnow
from db.views import ApprovalView
from worker import limits
from worker.api.bodies import StrictJsonRoute, _Body
from worker.api.state import ApiState, Caller, State
from worker.apikeys import Principal
from worker.machine.approvals import DecisionInput, decide
from worker.machine.budgets import SpendLimits, set_spend_limits, spend_limits
from worker.machine.concurrency import quota_of, set_quota
from worker.machine.messages import StepMessage
from worker.machine.waits import check_signal, signal_run

router = APIRouter(tags=["approvals"], route_class=StrictJsonRoute)

ApprovalId = Annotated[uuid.UUID, "the approval request's id"]


class DecisionBody(_Body):
    """A decision: who (default: the API key), why, and a budget request's new amount."""

    by: str | None = Field(None, min_length=1, max_length=limits.DECIDED_BY_MAX)
    comment: str | None = Field(None, max_length=limits.COMMENT_MAX)
    budget_usd: Decimal | None = Field(
        None, ge=0, description="Approving a budget request: the new budget or tenant limit."
    )


class RejectBody(_Body):
    """A rejection: who (default: the API key) and why."""

    by: str | None = Field(None, min_length=1, max_length=limits.DECIDED_BY_MAX)
    comment: str | None = Field(None, max_length=limits.COMMENT_MAX)


class SignalBody(_Body):
    """A named JSON payload for the step that waits (or will wait) for ``name``."""

    name: str = Field(min_length=1, max_length=limits.SIGNAL_NAME_MAX)
    payload: Any = None


class SignalSent(_Body):
    """The stored signal."""

    signal_id: uuid.UUID


class LimitsBody(_Body):
    """The tenant's spend limits per UTC day and month; null removes one."""

    daily_usd: Decimal | None = Field(None, ge=0)
    monthly_usd: Decimal | None = Field(None, ge=0)


@router.get("/v1/approvals")
async def list_approvals(
    state: State,
    caller: Caller,
    status: Annotated[ApprovalStatus | None, Query()] = ApprovalStatus.PENDING,
    run_id: uuid.UUID | None = None,
    group: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ApprovalView]:
    """Approval requests, newest first: pending ones unless ``status`` says otherwise."""
    return await state.read(
        lambda s: list(
            ApprovalRepository(s, caller.tenant_id).list(
                status=status, run_id=run_id, group=group, limit=limit
            )
        )
    )


@router.get("/v1/approvals/{approval_id}")
async def get_approval(approval_id: ApprovalId, state: State, caller: Caller) -> ApprovalView:
    """One approval request: what was asked, by whom, and how it was decided."""
    return await state.read(lambda s: ApprovalRepository(s, caller.tenant_id).get(approval_id))


@router.post("/v1/approvals/{approval_id}/approve")
async def approve(
    approval_id: ApprovalId, body: DecisionBody, state: State, caller: Caller
) -> ApprovalView:
    """Approve a pending request (409 ``already_decided`` if someone did first)."""
    return await _decide(state, caller, approval_id, True, body.by, body.comment, body.budget_usd)


@router.post("/v1/approvals/{approval_id}/reject")
async def reject(
    approval_id: ApprovalId, body: RejectBody, state: State, caller: Caller
) -> ApprovalView:
    """Reject a pending request: the step fails; a budget request's run is cancelled."""
    return await _decide(state, caller, approval_id, False, body.by, body.comment, None)


@router.post("/v1/runs/{run_id}/signals", status_code=201)
async def send_signal(
    run_id: uuid.UUID, body: SignalBody, state: State, caller: Caller
) -> SignalSent:
    """Send a signal to a run: stored, and delivered exactly once to a step waiting for it."""
    name, payload = check_signal(body.name, body.payload, state.settings)

    def work(session: Session) -> tuple[uuid.UUID, list[StepMessage]]:
        return signal_run(session, caller.tenant_id, run_id, name, payload, utcnow())

    signal_id, messages = await state.write(work)
    await state.send(messages)
    return SignalSent(signal_id=signal_id)


@router.get("/v1/limits")
async def get_limits(state: State, caller: Caller) -> SpendLimits:
    """The tenant's spend limits and its spend today and this month (UTC)."""
    return await state.read(lambda s: spend_limits(s, caller.tenant_id, utcnow()))


@router.put("/v1/limits")
async def set_limits(body: LimitsBody, state: State, caller: Caller) -> SpendLimits:
    """Set the tenant's spend limits: a run whose costs cross one pauses."""
    return await state.write(
        lambda s: set_spend_limits(s, caller.tenant, body.daily_usd, body.monthly_usd, utcnow())
    )


class QuotaBody(_Body):
    """The tenant's quota of steps running at once; null removes it."""

    max_running_steps: int | None = Field(None, ge=1, le=1_000_000)


@router.get("/v1/quota")
async def get_quota(state: State, caller: Caller) -> QuotaBody:
    """How many steps of the tenant may run at once (null: no quota)."""
    return QuotaBody(max_running_steps=await state.read(lambda s: quota_of(s, caller.tenant_id)))


@router.put("/v1/quota")
async def put_quota(body: QuotaBody, state: State, caller: Caller) -> QuotaBody:
    """Set the tenant's quota: steps past it wait throttled, holding no worker."""
    found = await state.write(lambda s: set_quota(s, caller.tenant, body.max_running_steps))
    return QuotaBody(max_running_steps=found)


async def _decide(
    state: ApiState,
    caller: Principal,
    approval_id: uuid.UUID,
    approve: bool,
    by: str | None,
    comment: str | None,
    budget_usd: Decimal | None,
) -> ApprovalView:
    ask = DecisionInput.check(by or f"api-key:{caller.key_id}", comment, budget_usd)

    def work(session: Session) -> tuple[list[StepMessage], ApprovalView]:
        decided = decide(
            session,
            caller.tenant_id,
            approval_id,
            approve,
            ask.by,
            ask.comment,
            utcnow(),
            budget_usd=ask.budget_usd,
        )
        return decided.messages, ApprovalRepository(session, caller.tenant_id).get(approval_id)

    messages, view = await state.write(work)
    await state.send(messages)
    return view
