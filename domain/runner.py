"""The run loop: one command's working context, token movement, and the final status.

A `Run` wraps a private copy of the instance state. Commands put tokens in motion; `drain`
then runs every runnable token until it waits, blocks on I/O, fails or finishes; `settle`
derives the instance status from the tokens. Node behaviour itself lives in `behaviours`,
routing and joins in `gateways`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain import behaviours, gateways, results, supervision
from domain.errors import InvalidStateForCommand
from domain.graph_index import GraphIndex, global_task_graph, index_of
from domain.history import History
from domain.model import Definition, EventKind, Flow, Node, NodeKind, ProcessGraph
from domain.state import (
    BlockedOn,
    ErrorInfo,
    InstanceState,
    InstanceStatus,
    NodeStatus,
    Token,
    TokenState,
)
from domain.tokens import (
    ERROR,
    JOB,
    SUBPROCESS,
    TIMER,
    TokenTable,
    arrive,
    finish,
    is_alive,
    is_runnable,
    kind_of,
    touch,
)
from domain.transition import CancelJobs, Effect, IdSource, Transition

ProcessLookup = Callable[[str], ProcessGraph | None]

# Enum members the loop uses on every step, looked up once (slow class attribute access on 3.11).
_ARRIVED, _EXECUTED_COMPLETE = NodeStatus.ARRIVED, NodeStatus.EXECUTED_COMPLETE
_ACTIVE, _ON_HOLD = TokenState.ACTIVE, TokenState.ON_HOLD


class Run:
    __slots__ = (
        "_indexes",
        "_main",
        "attempt_groups",
        "definition",
        "effects",
        "history",
        "ids",
        "limits_max_steps",
        "lookup",
        "now",
        "previous_status",
        "queue",
        "queued",
        "released",
        "state",
        "steps",
        "table",
    )

    def __init__(
        self,
        definition: Definition,
        state: InstanceState,
        *,
        now: datetime,
        ids: IdSource,
        lookup: ProcessLookup | None = None,
        max_steps: int = 1000,
    ) -> None:
        self.definition = definition
        self.state = state
        self.now = now
        self.ids = ids
        self.lookup = lookup
        self.limits_max_steps = max_steps
        self.table = TokenTable(state.tokens)
        self.history = History(state, now)
        self.effects: list[Effect] = []
        self.queue: deque[Token] = deque()
        self.queued: set[int] = set()
        self.steps = 0
        self.previous_status = state.status
        self.attempt_groups: dict[int, int] = {}  # token id -> service attempt group for a retry
        self.released: int | None = None  # supervised mode: the token allowed to run its task now
        self._indexes: dict[str | None, GraphIndex] = {}
        self._main: GraphIndex | None = None  # the instance's own process, asked for on every step

    # -- graphs -------------------------------------------------------------------------------

    def resolve(self, key: str) -> ProcessGraph | None:
        """A process by id: this document, then its global tasks, then other deployments."""
        graph: ProcessGraph | None = self.definition.processes.get(key)
        if graph is None:
            task = self.definition.global_tasks.get(key)
            if task is not None:
                graph = global_task_graph(task)
        if graph is None and self.lookup is not None:
            graph = self.lookup(key)
        return graph

    def index_for(self, process_key: str | None) -> GraphIndex:
        if process_key is None and self._main is not None:
            return self._main
        index = self._indexes.get(process_key)
        if index is None:
            graph = self.resolve(process_key or self.state.process_key)
            if graph is None:
                raise InvalidStateForCommand(
                    f"Process '{process_key}' that this instance runs in is no longer deployed; cancel the instance."
                )
            index = index_of(graph)
            self._indexes[process_key] = index
            if process_key is None:
                self._main = index
        return index

    def rebuild_table(self) -> None:
        """After the token list was replaced wholesale (stepping back)."""
        self.table = TokenTable(self.state.tokens)

    def node_of(self, token: Token) -> Node:
        return self.index_for(token.process_key).graph.nodes[token.current_node_id]

    # -- token movement -----------------------------------------------------------------------

    def new_token(self, parent: Token | None, process_key: str | None) -> Token:
        state = self.state
        token = Token(
            id=state.next_token_id,
            uuid=self.ids.new_id(),
            version=0,
            parent_token_id=parent.id if parent is not None else None,
            process_key=process_key,
            date_updated=self.now,
        )
        state.next_token_id += 1
        self.table.add(token)
        return token

    def enqueue(self, token: Token) -> None:
        if token.id not in self.queued:
            self.queued.add(token.id)
            self.queue.append(token)

    def place(self, token: Token, node: Node, flow_id: str | None) -> None:
        """The token arrives at `node` and will run it."""
        arrive(token, node, flow_id, self.now)
        self.enqueue(token)

    def resume_at(self, token: Token, node: Node) -> None:
        """The token stands at `node` past its join and will run the node's own behaviour."""
        arrive(token, node, None, self.now)
        token.status_current_node = NodeStatus.EXECUTING
        self.enqueue(token)

    def leave(self, token: Token, flows: list[Flow]) -> None:
        """Move along the chosen flows: none ends the token, several split it."""
        if not flows:
            self.end(token)
            return
        nodes = self.index_for(token.process_key).graph.nodes
        if len(flows) == 1:
            self.place(token, nodes[flows[0].target], flows[0].id)
            return
        token.state = _ON_HOLD
        token.blocked_on = None
        token.status_current_node = _EXECUTED_COMPLETE
        token.sync_node_tokens_count = len(flows)
        token.sync_node_tokens_finished = 0
        touch(token, self.now)
        for flow in flows:
            child = self.new_token(token, token.process_key)
            self.place(child, nodes[flow.target], flow.id)

    def leave_node(self, token: Token, node: Node) -> None:
        """Leave by the outgoing rule of the node's kind (see `gateways`)."""
        index = self.index_for(token.process_key)
        flow = index.straight.get(node.id)
        if flow is not None:
            self.place(token, index.graph.nodes[flow.target], flow.id)
            return
        outgoing = index.outgoing[node.id]
        if not outgoing:
            self.end(token)
            return
        variables = self.state.variables
        try:
            match node.kind:
                case NodeKind.EXCLUSIVE_GATEWAY:
                    flows = gateways.exclusive_flows(node, outgoing, variables)
                case NodeKind.INCLUSIVE_GATEWAY:
                    flows = gateways.inclusive_flows(node, outgoing, variables)
                case NodeKind.PARALLEL_GATEWAY:
                    flows = list(outgoing)
                case _:
                    flows = gateways.activity_flows(node, outgoing, variables)
                    if node.completion_quantity > 1:
                        flows = [flow for flow in flows for _ in range(node.completion_quantity)]
        except gateways.RoutingError as exc:
            self.fail(token, node, exc.message)
            return
        self.leave(token, flows)

    def end(self, token: Token) -> None:
        finish(token, self.now)
        parent = self.table.parent(token)
        if parent is not None:
            self.check_parent(parent)

    def check_parent(self, parent: Token | None) -> None:
        """A parent whose children are all done: a scope holder leaves its scope, a split parent ends."""
        while (
            parent is not None
            and parent.state is _ON_HOLD
            and not self.table.has_alive_children(parent)
        ):
            if kind_of(parent) == SUBPROCESS:
                self.finish_scope(parent)
                return
            finish(parent, self.now)
            parent = self.table.parent(parent)

    def enter_scope(self, token: Token, node: Node, process_key: str | None, scope: str) -> None:
        """Start an embedded subprocess or called process below `token`, which holds it."""
        index = self.index_for(process_key)
        entries = index.entries.get(scope, ())
        if not entries:
            where = f"Subprocess {gateways.label(node)}" if scope else f"Process '{index.graph.id}'"
            self.fail(token, node, f"{where} has no start event to begin with.")
            return
        token.state = TokenState.ON_HOLD
        if scope:
            description = f"Running subprocess {gateways.label(node)}"
        else:
            description = f"Running called process '{index.graph.id}'"
        token.blocked_on = BlockedOn(kind=SUBPROCESS, task_id=node.id, description=description)
        token.status_current_node = NodeStatus.EXECUTING
        touch(token, self.now)
        for entry in entries:
            child = self.new_token(token, process_key)
            self.place(child, index.graph.nodes[entry], None)

    def finish_scope(self, holder: Token) -> None:
        node = self.node_of(holder)
        holder.state = TokenState.ACTIVE
        holder.blocked_on = None
        holder.status_current_node = NodeStatus.EXECUTING
        touch(holder, self.now)
        self.complete_activity(holder, node, None, results.DEFAULT_SUBPROCESS)

    def complete_activity(
        self, token: Token, node: Node, result: Any, default_name: str, written: dict[str, Any] | None = None
    ) -> None:
        """Store the result, record the task as done and move on."""
        try:
            changes = results.result_changes(self.index_for(token.process_key), node, result, default_name)
        except results.MappingProblem as exc:
            self.fail(token, node, str(exc))
            return
        if written:
            changes = {**written, **changes}
        if changes:
            self.state.variables.update(changes)
        if node.is_task:
            self.state.completed_tasks.append(node.id)
            supervision.task_done(self, token, node, success=True)
            data = {"variablesChanged": sorted(changes)}
            self.history.add("TaskCompleted", node=node, token=token, data=data)
        elif node.kind is NodeKind.SUB_PROCESS:
            self.history.add("SubprocessCompleted", node=node, token=token)
        token.status_current_node = _EXECUTED_COMPLETE
        self.leave_node(token, node)

    # -- failures, errors, termination -----------------------------------------------------------

    def fail(
        self, token: Token, node: Node, message: str, *, details: str = "", code: str | None = None
    ) -> None:
        """The token stays on `node`, blocked on the error; the instance goes to `error`."""
        previous = token.blocked_on
        token.blocked_on = BlockedOn(
            kind=ERROR,
            task_id=node.id,
            description=details or message,
            last_error=message,
            job_attempt=previous.job_attempt if previous is not None else None,
            attempt_group=previous.attempt_group if previous is not None else None,
        )
        touch(token, self.now)
        if self.state.error is None:
            self.state.error = ErrorInfo(
                task_id=node.id,
                task_name=node.name,
                error_message=message,
                error_details=details,
                occurred_at=self.now,
                error_code=code,
                token_id=token.id,
            )
        self.state.variables[results.LAST_ERROR] = {"errorCode": code, "errorMessage": message}
        data = {"errorMessage": message, "errorCode": code}
        self.history.add("TaskFailed", node=node, token=token, data=data)
        if node.is_task:
            supervision.task_done(self, token, node, success=False)

    def cancel_jobs(self, token: Token) -> None:
        if kind_of(token) in (JOB, TIMER):
            self.effects.append(CancelJobs(token_id=token.id, node_id=token.current_node_id))

    def _stop(self, token: Token, state: TokenState) -> None:
        self.cancel_jobs(token)
        finish(token, self.now, state)

    def error_boundary(self, graph: ProcessGraph, host: Node, code: str | None) -> Node | None:
        """The error boundary event on `host` that catches `code`: exact code first, then catch-all."""
        catch_all = None
        for boundary_id in graph.boundaries.get(host.id, ()):
            boundary = graph.nodes[boundary_id]
            event = boundary.event
            if event is None or event.kind is not EventKind.ERROR:
                continue
            if event.code is None:
                catch_all = catch_all or boundary
            elif code is not None and event.code == code:
                return boundary
        return catch_all

    def throw_error(
        self, token: Token, node: Node, code: str | None, message: str, *, from_end_event: bool
    ) -> None:
        """A BPMN error: caught by the nearest matching error boundary (on the task, then on each
        enclosing subprocess/call activity); uncaught, an error end event ends the instance with
        outcome "error", a task's error puts the instance in `error`."""
        self.state.variables[results.LAST_ERROR] = {"errorCode": code, "errorMessage": message}
        if not from_end_event:
            boundary = self.error_boundary(self.index_for(token.process_key).graph, node, code)
            if boundary is not None:
                self.cancel_jobs(token)
                self.history.add("ErrorCaught", node=boundary, token=token, data={"errorCode": code})
                self.place(token, boundary, None)
                return
        holder = self.table.holder_of(token)
        while holder is not None:
            host = self.node_of(holder)
            boundary = self.error_boundary(self.index_for(holder.process_key).graph, host, code)
            if boundary is not None:
                if from_end_event:
                    finish(token, self.now)
                for inner in self.table.alive_descendants(holder):
                    self._stop(inner, TokenState.DISMISSED)
                holder.state = TokenState.ACTIVE
                self.history.add("ErrorCaught", node=boundary, token=holder, data={"errorCode": code})
                self.place(holder, boundary, None)
                return
            holder = self.table.holder_of(holder)
        if not from_end_event:
            shown = f"Unhandled BPMN error '{code}' in {gateways.label(node)}"
            self.fail(token, node, f"{shown}: {message}" if message and message != code else shown, code=code)
            return
        finish(token, self.now)
        for other in self.state.tokens:
            if is_alive(other):
                self._stop(other, TokenState.TERMINATED)
        self.state.outcome = "error"
        self.history.add(
            "ErrorEndEventReached", node=node, token=token, data={"errorCode": code, "errorMessage": message}
        )

    def terminate(self, token: Token, node: Node) -> None:
        """Terminate end event: every other live token of the scope instance is TERMINATED."""
        holder = self.table.holder_of(token)
        victims = self.state.tokens if holder is None else self.table.alive_descendants(holder)
        finish(token, self.now)
        for other in list(victims):
            if other is not token and is_alive(other):
                self._stop(other, TokenState.TERMINATED)
        self.history.add("TerminateEndEventReached", node=node, token=token)
        if holder is None:
            self.state.outcome = "terminated"
        else:
            self.finish_scope(holder)

    # -- loop and status ---------------------------------------------------------------------------

    def drain(self) -> None:
        """Run every runnable token until nothing can move without outside input."""
        for token in self.state.tokens:
            if is_runnable(token):
                self.enqueue(token)
        queue = self.queue
        while True:
            while queue:
                token = queue.popleft()
                self.queued.discard(token.id)
                if not is_runnable(token):
                    continue
                node = self.node_of(token)
                self.steps += 1
                if self.steps > self.limits_max_steps:
                    self.fail(
                        token,
                        node,
                        f"Stopped after {self.limits_max_steps} steps in one command at node '{node.id}': "
                        "the model may loop forever.",
                    )
                    # Other runnable tokens stay where they are; the next command resumes them.
                    queue.clear()
                    self.queued.clear()
                    return
                behaviours.execute(self, token, node, gate=token.status_current_node is _ARRIVED)
            if not gateways.settle_inclusive(self):
                return

    def settle(self) -> None:
        """Derive the instance status from its tokens (SEMANTICS.md status rules)."""
        state = self.state
        state.updated_at = self.now
        if state.status is InstanceStatus.CANCELLED:
            return
        failed: Token | None = None
        running = waiting = alive = False
        for token in state.tokens:
            if not is_alive(token):
                continue
            alive = True
            kind = kind_of(token)
            if kind == ERROR:
                failed = failed or token
            elif kind == JOB or (kind is None and token.state is _ACTIVE):
                running = True
            elif kind is not None and kind != SUBPROCESS:
                waiting = True
        if failed is not None:
            state.status = InstanceStatus.ERROR
            self._keep_error_current(failed)
            if self.previous_status is not InstanceStatus.ERROR:
                error = state.error
                self.history.add(
                    "InstanceErrored",
                    token=failed,
                    data={"taskId": error.task_id, "errorMessage": error.error_message} if error else None,
                )
            return
        state.error = None
        if running:
            state.status = InstanceStatus.RUNNING
        elif waiting or alive:
            state.status = InstanceStatus.WAITING
        else:
            state.status = InstanceStatus.COMPLETED
            if self.previous_status is not InstanceStatus.COMPLETED:
                state.outcome = state.outcome or "success"
                state.completed_at = self.now
                self.history.add("InstanceCompleted", data={"outcome": state.outcome})

    def _keep_error_current(self, failed: Token) -> None:
        error = self.state.error
        if error is not None and error.token_id is not None:
            current = self.table.by_id.get(error.token_id)
            if current is not None and kind_of(current) == ERROR:
                return
        blocked = failed.blocked_on
        node = self.node_of(failed)
        self.state.error = ErrorInfo(
            task_id=node.id,
            task_name=node.name,
            error_message=blocked.last_error or "" if blocked is not None else "",
            error_details=blocked.description if blocked is not None else "",
            occurred_at=failed.date_updated,
            token_id=failed.id,
        )

    def transition(self) -> Transition:
        return Transition(state=self.state, events=self.history.events, effects=self.effects)
