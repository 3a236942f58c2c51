"""Start, read, wait for and cancel runs from any Python service.

Reads come from the database, never from Celery results::

    client = Client()
    run_id = client.start_run("report", inputs={"url": "..."}, idempotency_key="r-42")
    view = client.wait(run_id, timeout=600)
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    Artifact,
    WorkflowRun,
)
from db.repositories import (
    ApprovalRepository,
    ArtifactRepository,
    CostRepository,
    ProjectRepository,
    RunRepository,
    WorkerRepository,
    ensure_tenant,
    find_tenant,
)
from db.session import run_transaction, transaction
from db.states import ApprovalStatus, MissedPolicy, ScheduleStatus
from db.types import utcnow
from db.views import (
    ApprovalView,
    ArtifactView,
    CostSummary,
    CostTotal,
    DefinitionView,
    EventView,
    RunSummary,
    RunView,
    ScheduleView,
    WorkerView,
)
from worker import blobs, limits, tracing
from worker.app import make_celery
from worker.definitions import WorkflowSpec, parse_spec, validate_spec
from worker.diff import RunDiff, diff_runs, load_side
from worker.dispatch import Dispatcher
from worker.errors import DefinitionError, NotFound, RunNotFinished, UnregisteredStep
from worker.ids import parse_id
from worker.machine.approvals import DecisionInput, decide
from worker.machine.budgets import SpendLimits, set_spend_limits, spend_limits
from worker.machine.cancel import cancel_run
from worker.machine.concurrency import set_quota
from worker.machine.definitions import find_definition, store_definition
from worker.machine.fork import ForkRequest, check_fork, fork_run
from worker.machine.messages import StepMessage
from worker.machine.retention import (
    DeletedRun,
    count_ended_runs,
    delete_objects,
    delete_run,
    purge_runs,
)
from worker.machine.retry_run import retry_run
from worker.machine.schedules import add_schedule, delete_schedule, set_status
from worker.machine.start import StartRequest, start_run
from worker.machine.waits import check_signal, signal_run
from worker.registry import StepRegistry, registry
from worker.runtime import Runtime
from worker.settings import Settings, get_settings
from worker.workers import StepNames


class Client:
    """A connection to cairn for one tenant."""

    def __init__(
        self,
        settings: Settings | None = None,
        tenant: str | None = None,
        *,
        steps: StepRegistry | None = None,
        load_step_modules: bool = False,
    ) -> None:
        self.settings = settings or get_settings()
        self.tenant = tenant or self.settings.default_tenant
        self._registry = steps or registry
        if load_step_modules:
            self._registry.load_modules(self.settings.step_modules)
        self._app = make_celery(self.settings)
        self.runtime = Runtime(self.settings, Dispatcher(self._app), self._registry)
        self._known_steps = StepNames()

    def close(self) -> None:
        """Release the database pool and broker connections."""
        self.runtime.engine.dispose()
        self._app.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start_run(
        self,
        workflow: str | None = None,
        *,
        spec: WorkflowSpec | dict[str, Any] | str | None = None,
        version: int | None = None,
        inputs: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        run_id: uuid.UUID | str | None = None,
        project: str = "default",
        budget_usd: Decimal | str | float | None = None,
        priority: int | None = None,
    ) -> uuid.UUID:
        """Start a run of ``workflow`` (a registered name) or of ``spec``; return its id.

        ``priority`` (0 lowest to 9 highest) replaces the definition's for every step of
        this run: a higher one is taken from the queue first.

        The run is committed before any message is sent. The same ``idempotency_key``
        returns the run it first made.
        """
        request = StartRequest.parse(
            {
                "tenant": self.tenant,
                "workflow": workflow,
                "spec": spec,
                "version": version,
                "inputs": inputs if inputs is not None else {},
                "idempotency_key": idempotency_key,
                "run_id": run_id,
                "project": project,
                "budget_usd": budget_usd,
                "priority": priority,
            }
        )
        # Without a span of the caller's, the start is the root of the run's trace.
        with tracing.start_span("cairn.start_run", workflow=workflow or "(spec)"):
            try:
                started = start_run(
                    self.runtime.engine, self.settings, request, self.registered_step_names()
                )
            except UnregisteredStep:
                if self._registry.names():
                    raise
                # Names read a moment ago may miss a worker just started: read them again.
                self._known_steps.forget()
                names = self.registered_step_names()
                started = start_run(self.runtime.engine, self.settings, request, names)
            self.runtime.dispatcher.send(started.messages)
        return started.run_id

    def _tenant_id(self, session: Session, run_id: uuid.UUID | None = None) -> uuid.UUID:
        tenant = find_tenant(session, self.tenant)
        if tenant is None:
            raise NotFound(f"run {run_id} not found" if run_id else f"no tenant {self.tenant!r}")
        return tenant.id

    def registered_step_names(self) -> frozenset[str] | None:
        """Step names a definition may use: this process's, else the running workers'
        (read again after a few seconds: :class:`StepNames`).

        None (no check) when neither this process nor any running worker knows any.
        """
        if self._registry.names():
            return self._registry.names()
        hit, names = self._known_steps.cached()
        if hit:
            return names
        return self._known_steps.store(self.list_workers())

    def list_workers(self) -> list[WorkerView]:
        """Every worker process in the registry, newest first."""
        with transaction(self.runtime.engine) as session:
            return WorkerRepository(session).views()

    def get_run(self, run_id: uuid.UUID | str) -> RunView:
        """The run with its steps; :class:`NotFound` if missing or another tenant's."""
        rid = parse_id(run_id, "run_id")
        with transaction(self.runtime.engine) as session:
            view, steps = RunRepository(session, self._tenant_id(session, rid)).view(rid)
        return blobs.resolve_run(self.runtime.store, view, steps)

    # --- artifacts ---------------------------------------------------------------------
    def list_artifacts(self, run_id: uuid.UUID | str) -> list[ArtifactView]:
        """The artifacts of a run, oldest first."""
        rid = parse_id(run_id, "run_id")
        with transaction(self.runtime.engine) as session:
            tenant_id = self._tenant_id(session, rid)
            RunRepository(session, tenant_id).get(rid)
            return ArtifactRepository(session, tenant_id).views(rid)

    def download(self, run_id: uuid.UUID | str, name: str, step: str | None = None) -> bytes:
        """An artifact's bytes, sha256-verified."""
        row = self._artifact(run_id, name, step)
        return self.runtime.store.get_bytes(row.key, expected_sha256=row.sha256)

    def presigned_url(
        self, run_id: uuid.UUID | str, name: str, step: str | None = None, expires_s: int = 3600
    ) -> str:
        """A time-limited GET URL of an artifact (S3 backend)."""
        return self.runtime.store.presigned_url(self._artifact(run_id, name, step).key, expires_s)

    def _artifact(self, run_id: uuid.UUID | str, name: str, step: str | None) -> Artifact:
        rid = parse_id(run_id, "run_id")
        with transaction(self.runtime.engine) as session:
            return ArtifactRepository(session, self._tenant_id(session, rid)).stored(
                rid, name, step
            )

    def wait(self, run_id: uuid.UUID | str, timeout: float = 60.0, poll_s: float = 0.2) -> RunView:
        """Poll until the run has finished; :class:`RunNotFinished` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.get_run(run_id)
            if view.finished:
                return view
            if time.monotonic() > deadline:
                raise RunNotFinished(f"run {view.id} is still {view.status} after {timeout:g} s")
            time.sleep(poll_s)

    def cancel(self, run_id: uuid.UUID | str, reason: str = "") -> bool:
        """Cancel the run; False if it had already finished."""
        rid = parse_id(run_id, "run_id")

        return run_transaction(
            self.runtime.engine,
            lambda s: cancel_run(s, self._tenant_id(s, rid), rid, utcnow(), reason),
        )

    def retry(self, run_id: uuid.UUID | str) -> int:
        """Re-run a failed or cancelled run from the steps that did not succeed.

        Succeeded steps are not re-run. Returns how many steps were queued at once.
        """
        rid = parse_id(run_id, "run_id")
        messages = run_transaction(
            self.runtime.engine, lambda s: retry_run(s, self._tenant_id(s, rid), rid, utcnow())
        )
        self.runtime.dispatcher.send(messages)
        return len(messages)

    def fork(
        self,
        run_id: uuid.UUID | str,
        from_step: str,
        *,
        inputs: dict[str, Any] | None = None,
        step_inputs: dict[str, dict[str, Any]] | None = None,
        label: str | None = None,
    ) -> uuid.UUID:
        """Fork a run (which may still run) at ``from_step``; return the new run's id.

        Steps not after ``from_step`` that succeeded are reused as they are (outputs,
        artifacts, costs: nothing runs or is paid again); ``from_step`` and the steps
        after it run with ``inputs`` merged over the run's and their own ``step_inputs``.
        """
        request = ForkRequest(
            parse_id(run_id, "run_id"),
            from_step,
            inputs if inputs is not None else {},
            step_inputs if step_inputs is not None else {},
            label,
        )
        check_fork(request, self.settings)
        started = run_transaction(
            self.runtime.engine,
            lambda s: fork_run(
                s, self._tenant_id(s, request.run_id), self.settings, request, utcnow()
            ),
        )
        self.runtime.dispatcher.send(started.messages)
        return started.run_id

    def diff(self, run_a: uuid.UUID | str, run_b: uuid.UUID | str) -> RunDiff:
        """Compare two runs of one workflow step by step (see :mod:`worker.diff`)."""
        a, b = parse_id(run_a, "run_a"), parse_id(run_b, "run_b")

        def work(session: Session) -> RunDiff:
            tenant_id = self._tenant_id(session, a)
            return diff_runs(load_side(session, tenant_id, a), load_side(session, tenant_id, b))

        return run_transaction(self.runtime.engine, work)

    # --- approvals, signals, spend limits -------------------------------------------
    def list_approvals(
        self,
        status: str | None = "pending",
        *,
        run_id: uuid.UUID | str | None = None,
        group: str | None = None,
        limit: int = 100,
    ) -> list[ApprovalView]:
        """Approval requests, newest first (pending ones unless ``status`` says otherwise;
        None lists every status)."""
        if status is not None and status not in set(ApprovalStatus):
            raise DefinitionError("status", f"must be one of {sorted(ApprovalStatus)}")
        rid = parse_id(run_id, "run_id") if run_id is not None else None
        limits.check_int("limit", limit, 1, 1000)

        def work(session: Session) -> list[ApprovalView]:
            repo = ApprovalRepository(session, self._tenant_id(session))
            return list(repo.list(status=status, run_id=rid, group=group, limit=limit))

        return run_transaction(self.runtime.engine, work)

    def get_approval(self, approval_id: uuid.UUID | str) -> ApprovalView:
        """One approval request."""
        aid = parse_id(approval_id, "approval_id")
        return run_transaction(
            self.runtime.engine,
            lambda s: ApprovalRepository(s, self._tenant_id(s)).get(aid),
        )

    def approve(
        self,
        approval_id: uuid.UUID | str,
        *,
        by: str,
        comment: str | None = None,
        budget_usd: Decimal | str | float | None = None,
    ) -> ApprovalView:
        """Approve a pending request; the step (or the paused run) goes on.

        A budget request ("raise the budget?") needs ``budget_usd``: the run's new budget,
        or the tenant's new daily or monthly limit, whichever the run crossed. Deciding a
        request that is not pending raises :class:`AlreadyDecided`, naming who did.
        """
        return self._decide(approval_id, True, by, comment, budget_usd)

    def reject(
        self, approval_id: uuid.UUID | str, *, by: str, comment: str | None = None
    ) -> ApprovalView:
        """Reject a pending request: the step raises ApprovalRejected (a budget request:
        the run is cancelled)."""
        return self._decide(approval_id, False, by, comment, None)

    def _decide(
        self,
        approval_id: uuid.UUID | str,
        approve: bool,
        by: str,
        comment: str | None,
        budget_usd: Decimal | str | float | None,
    ) -> ApprovalView:
        aid = parse_id(approval_id, "approval_id")
        ask = DecisionInput.check(by, comment, budget_usd)

        def work(session: Session) -> tuple[list[StepMessage], ApprovalView]:
            tenant_id = self._tenant_id(session)
            decided = decide(
                session,
                tenant_id,
                aid,
                approve,
                ask.by,
                ask.comment,
                utcnow(),
                budget_usd=ask.budget_usd,
            )
            return decided.messages, ApprovalRepository(session, tenant_id).get(aid)

        messages, view = run_transaction(self.runtime.engine, work)
        self.runtime.dispatcher.send(messages)
        return view

    def signal(self, run_id: uuid.UUID | str, name: str, payload: Any = None) -> uuid.UUID:
        """Send signal ``name`` with a JSON ``payload`` to a run; its id.

        Stored durably and delivered exactly once: to the step waiting for ``name`` now,
        or kept for the next step that waits for it.
        """
        rid = parse_id(run_id, "run_id")
        settings = self.settings
        signal_name, body = check_signal(name, payload, settings)

        def work(session: Session) -> tuple[uuid.UUID, list[StepMessage]]:
            return signal_run(
                session, self._tenant_id(session, rid), rid, signal_name, body, utcnow()
            )

        signal_id, messages = run_transaction(self.runtime.engine, work)
        self.runtime.dispatcher.send(messages)
        return signal_id

    def set_spend_limits(
        self,
        *,
        daily_usd: Decimal | str | float | None = None,
        monthly_usd: Decimal | str | float | None = None,
    ) -> SpendLimits:
        """Set the tenant's spend limits per UTC day and month (None removes one): a run
        whose costs would cross one pauses and asks for a new limit."""
        return run_transaction(
            self.runtime.engine,
            lambda s: set_spend_limits(s, self.tenant, daily_usd, monthly_usd, utcnow()),
        )

    def set_quota(self, max_running_steps: int | None) -> int | None:
        """Set how many steps of the tenant may run at once, across every worker (None
        removes the quota); steps past it wait throttled, holding no worker."""
        return run_transaction(
            self.runtime.engine, lambda s: set_quota(s, self.tenant, max_running_steps)
        )

    def quota(self) -> int | None:
        """The tenant's quota of running steps (None: none, as for a tenant with no runs
        yet)."""

        def read(session: Session) -> int | None:
            tenant = find_tenant(session, self.tenant)
            quota = None if tenant is None else tenant.max_running_steps
            return None if quota is None else int(quota)

        return run_transaction(self.runtime.engine, read)

    def spend_limits(self) -> SpendLimits:
        """The tenant's spend limits and what it spent today and this month (none and
        nothing for a tenant with no runs yet)."""

        def read(session: Session) -> SpendLimits:
            tenant = find_tenant(session, self.tenant)
            if tenant is None:
                return SpendLimits(self.tenant, None, None, Decimal(0), Decimal(0))
            return spend_limits(session, tenant.id, utcnow())

        return run_transaction(self.runtime.engine, read)

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        before: uuid.UUID | str | None = None,
    ) -> list[RunSummary]:
        """The tenant's runs, newest first, filtered by status, workflow name and time.

        ``before`` pages on: the id of the last run of the previous page.
        """
        cursor = parse_id(before, "before") if before is not None else None
        with transaction(self.runtime.engine) as session:
            tenant = find_tenant(session, self.tenant)
            if tenant is None:
                return []
            return list(
                RunRepository(session, tenant.id).summaries(
                    status=status, workflow=workflow, since=since, limit=limit, before=cursor
                )
            )

    def costs(self, run_id: uuid.UUID | str) -> CostSummary:
        """A run's costs per step, by provider and model, and in total."""
        rid = parse_id(run_id, "run_id")
        with transaction(self.runtime.engine) as session:
            tenant_id = self._tenant_id(session, rid)
            run = RunRepository(session, tenant_id).get(rid)
            return CostRepository(session, tenant_id).summary(rid, run.cost_usd)

    def cost_totals(self) -> list[CostTotal]:
        """The tenant's costs over every run, by provider and model."""
        with transaction(self.runtime.engine) as session:
            tenant = find_tenant(session, self.tenant)
            return CostRepository(session, tenant.id).totals_by_model() if tenant else []

    def events(
        self, run_id: uuid.UUID | str, since: uuid.UUID | str | None = None
    ) -> list[EventView]:
        """The run's event log, oldest first; after event ``since`` when given."""
        rid = parse_id(run_id, "run_id")
        after = parse_id(since, "since") if since is not None else None
        with transaction(self.runtime.engine) as session:
            repo = RunRepository(session, self._tenant_id(session, rid))
            return list(repo.events(rid, since=after))

    def register_definition(
        self, spec: WorkflowSpec | dict[str, Any] | str, project: str = "default"
    ) -> DefinitionView:
        """Validate and store a definition; the same spec returns its existing version."""
        limits.check_text("tenant", self.tenant, limits.TENANT_MAX)
        limits.check_text("project", project, limits.PROJECT_MAX)
        parsed = parse_spec(spec)
        validate_spec(parsed, self._registry.names() or None)

        def work(session: Session) -> DefinitionView:
            tenant = ensure_tenant(session, self.tenant)
            proj = ProjectRepository(session, tenant.id).ensure(project)
            return DefinitionView.of(store_definition(session, tenant.id, proj.id, parsed))

        return run_transaction(self.runtime.engine, work)

    def get_definition(
        self, name: str, version: int | None = None, project: str = "default"
    ) -> DefinitionView:
        """A stored definition (the newest version when ``version`` is None)."""
        with transaction(self.runtime.engine) as session:
            proj = ProjectRepository(session, self._tenant_id(session)).find(project)
            if proj is None:
                raise NotFound(f"no project {project!r}")
            return DefinitionView.of(find_definition(session, proj.id, name, version))

    def list_definitions(self, project: str = "default") -> list[DefinitionView]:
        """Every stored version of every workflow of the project."""
        with transaction(self.runtime.engine) as session:
            tenant = find_tenant(session, self.tenant)
            proj = ProjectRepository(session, tenant.id).find(project) if tenant else None
            if tenant is None or proj is None:
                return []
            return list(ProjectRepository(session, tenant.id).definitions(proj.id))

    # --- schedules -------------------------------------------------------------------
    def add_schedule(
        self,
        name: str,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        inputs: dict[str, Any] | None = None,
        version: int | None = None,
        project: str = "default",
        missed_policy: str = "skip",
        catch_up_max: int = 0,
    ) -> uuid.UUID:
        """Start ``workflow`` with ``inputs`` on every slot of ``cron`` (in ``timezone``)."""
        try:
            policy = MissedPolicy(missed_policy)
        except ValueError:
            raise DefinitionError("missed_policy", "must be skip or catch_up") from None
        return run_transaction(
            self.runtime.engine,
            lambda s: add_schedule(
                s,
                self.tenant,
                name,
                workflow,
                cron,
                utcnow(),
                timezone=timezone,
                inputs=inputs,
                version=version,
                project=project,
                missed_policy=policy,
                catch_up_max=catch_up_max,
            ),
        )

    def list_schedules(self) -> list[ScheduleView]:
        """The tenant's schedules, by name."""
        with transaction(self.runtime.engine) as session:
            tenant = find_tenant(session, self.tenant)
            if tenant is None:
                return []
            return list(ProjectRepository(session, tenant.id).schedules())

    def pause_schedule(self, schedule_id: uuid.UUID | str) -> None:
        """Stop firing until resumed."""
        self._set_schedule(schedule_id, ScheduleStatus.PAUSED)

    def resume_schedule(self, schedule_id: uuid.UUID | str) -> None:
        """Fire again, from the next slot after now."""
        self._set_schedule(schedule_id, ScheduleStatus.ACTIVE)

    def delete_schedule(self, schedule_id: uuid.UUID | str) -> None:
        """Delete a schedule; the runs it started stay."""
        sid = parse_id(schedule_id, "schedule_id")
        run_transaction(self.runtime.engine, lambda s: delete_schedule(s, self._tenant_id(s), sid))

    def _set_schedule(self, schedule_id: uuid.UUID | str, status: ScheduleStatus) -> None:
        sid = parse_id(schedule_id, "schedule_id")
        run_transaction(
            self.runtime.engine,
            lambda s: set_status(s, self._tenant_id(s), sid, status, utcnow()),
        )

    # --- retention ---------------------------------------------------------------------
    def delete_run(self, run_id: uuid.UUID | str) -> None:
        """Delete an ended run with every row it owns, then its objects in the store.

        :class:`RunNotEnded` if it has not ended (cancel it first); :class:`NotFound` if
        missing or another tenant's.
        """
        rid = parse_id(run_id, "run_id")

        def gone(session: Session) -> DeletedRun | None:  # a commit lost on the way back
            tenant_id = self._tenant_id(session, rid)
            if session.scalar(select(WorkflowRun.id).where(WorkflowRun.id == rid)) is not None:
                return None
            return DeletedRun(rid, tenant_id, ())  # its objects are found by their prefix

        deleted = run_transaction(
            self.runtime.engine,
            lambda s: delete_run(s, self._tenant_id(s, rid), rid),
            verify=gone,
        )
        delete_objects(self.runtime.store, [deleted])

    def purge_runs(self, older_than: timedelta, *, dry_run: bool = False) -> int:
        """Delete the tenant's runs that ended more than ``older_than`` ago, with every row
        they own and their objects; return how many (with ``dry_run``, only count them).

        Runs that have not ended are never touched.
        """
        if older_than <= timedelta(0):
            raise DefinitionError("older_than", f"must be a positive duration, not {older_than}")
        try:
            cutoff = utcnow() - older_than
        except OverflowError:
            raise DefinitionError("older_than", f"{older_than} reaches before year 1") from None
        with transaction(self.runtime.engine) as session:
            tenant = find_tenant(session, self.tenant)
            if tenant is None:
                return 0
            if dry_run:
                return count_ended_runs(session, cutoff, tenant_id=tenant.id)
        return purge_runs(self.runtime.engine, self.runtime.store, cutoff, tenant_id=tenant.id)
