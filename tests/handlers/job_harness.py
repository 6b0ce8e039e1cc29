"""An in-memory flowcore for job feed-back tests: the bus on fakes, a fixed clock, and a job
queue the tests claim from by hand (what the job store's claim does)."""

from __future__ import annotations

from commands.instances import GetProcessInstanceHistory
from domain.transition import CallService
from handlers.bus import Bus, RequestContext
from handlers.deps import Deps
from handlers.jobs import Backoff, ClaimedJob
from handlers.table import HANDLERS
from tests.bus_driver import BusDriver
from tests.handlers.fakes import CountingIds, FakeJobRow, FakeUnitOfWork, FixedClock, Store
from tests.handlers.models import HEAD, props

CTX = RequestContext(tenant_id="bank-a", request_id="r1", actor="ops-anna")
WORKER = "w-1"


def service_model(*, boundary: bool = False, retries: int = 3) -> str:
    """start → Score (service, ResultVariable=score) → Decide (script) → end; optionally an error
    boundary catching DENIED on Score that leads to a Denied end."""
    caught = ""
    if boundary:
        caught = """
    <bpmn:boundaryEvent id="Caught" attachedToRef="Score">
      <bpmn:errorEventDefinition errorRef="Denied"/>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="c1" sourceRef="Caught" targetRef="DeniedEnd"/>
    <bpmn:endEvent id="DeniedEnd"/>"""
    score_props = props(
        Endpoint="https://bureau.test/score/${customerId}", Retries=str(retries), RetryBackoff="1000",
        ResultVariable="score",
    )
    return HEAD + f"""
  <bpmn:error id="Denied" errorCode="DENIED"/>
  <bpmn:process id="Loan" name="Loan" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Score"/>
    <bpmn:serviceTask id="Score" name="Credit Score">{score_props}</bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Score" targetRef="Decide"/>
    <bpmn:scriptTask id="Decide" name="Decide" scriptFormat="javascript">
      <bpmn:script>approved = score.value &gt; 600;</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="Decide" targetRef="End"/>
    <bpmn:endEvent id="End"/>{caught}
  </bpmn:process>
</bpmn:definitions>"""


def timer_model() -> str:
    return HEAD + """
  <bpmn:process id="Wait" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Pause"/>
    <bpmn:intermediateCatchEvent id="Pause">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xsi:type="bpmn:tFormalExpression">PT5M</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="Pause" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


class Harness(BusDriver):
    def __init__(self) -> None:
        self.store = Store()
        self.clock = FixedClock()
        self.deps = Deps(uow=lambda: FakeUnitOfWork(self.store), clock=self.clock, ids=CountingIds())
        self.bus = Bus(HANDLERS, self.deps)
        self.ctx = CTX


    def row_version(self, guid: str) -> int:
        return self.store.instances[(CTX.tenant_id, guid)].row_version

    def claim(self, worker: str = WORKER) -> ClaimedJob:
        """What the job store's claim does: the oldest due pending job becomes running, leased to `worker`."""
        due = [r for r in self.store.job_rows.values()
               if r.status == "pending" and r.run_at is not None and r.run_at <= self.clock.now()]
        row = min(due, key=lambda r: (r.run_at, r.id))
        return self.reclaim(row, worker)

    def reclaim(self, row: FakeJobRow, worker: str = WORKER) -> ClaimedJob:
        row.status, row.locked_by, row.attempts = "running", worker, row.attempts + 1
        effect = row.effect
        return ClaimedJob(
            id=row.id, tenant_id=row.tenant_id, instance_guid=row.instance_guid, token_id=row.token_id,
            node_id=row.node_id, kind=row.kind, attempt=row.attempts, max_attempts=row.max_attempts,
            worker_id=worker,
            attempt_group=effect.attempt_group if isinstance(effect, CallService) else 1,
            retry_backoff_ms=effect.retry_backoff_ms if isinstance(effect, CallService) else 0,
        )

    def row(self, job: ClaimedJob) -> FakeJobRow:
        return self.store.job_rows[job.id]

    async def event_types(self, guid: str) -> list[str]:
        data = await self.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
        return [item["eventType"] for item in reversed(data["items"])]


FAST = Backoff(cap_ms=60_000, jitter=1.0)  # jitter 1.0: the full doubled backoff, easy to check
