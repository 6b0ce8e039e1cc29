"""In-process engine benchmark: flowcore against SpiffWorkflow on the same two models.

Each scenario starts many instances of one model and runs each from start to end, inside this
process, with no database or HTTP: flowcore through `domain.engine.start` (JavaScript scripts
in the quickjs sandbox), SpiffWorkflow 3.x through `BpmnWorkflow.do_engine_steps` (Python
scripts). Parsing happens once per engine, outside the timing. Per-instance CPU time
(`time.process_time`) is measured after a warm-up, over several rounds; the median round wins.

    .venv/bin/python -m bench.engine_bench [--instances N] [--rounds R] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TARGET_RATIO = 5.0

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="bench" '
    'targetNamespace="http://flowcore.bench">\n'
)


def _script(ident: str, code: str, language: str) -> str:
    return f'<scriptTask id="{ident}" scriptFormat="{language}"><script>{escape(code)}</script></scriptTask>'


def _flow(ident: str, source: str, target: str) -> str:
    return f'<sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}"/>'


def sequence_model(language: str, tasks: int = 5) -> str:
    """start → `tasks` script tasks each doing `x = x + 1` → end."""
    chain = ["start", *[f"script{i}" for i in range(1, tasks + 1)], "end"]
    nodes = ['<startEvent id="start"/>', '<endEvent id="end"/>']
    nodes += [_script(name, "x = x + 1", language) for name in chain[1:-1]]
    flows = [_flow(f"flow{i}", a, b) for i, (a, b) in enumerate(itertools.pairwise(chain))]
    return _document("sequence", nodes + flows)


def parallel_model(language: str, branches: int = 3) -> str:
    """start → fork → `branches` script tasks (`bN = x + N`) → join → end."""
    nodes = ['<startEvent id="start"/>', '<parallelGateway id="fork"/>', '<parallelGateway id="join"/>',
             '<endEvent id="end"/>']
    flows = [_flow("toFork", "start", "fork"), _flow("toEnd", "join", "end")]
    for n in range(1, branches + 1):
        nodes.append(_script(f"branch{n}", f"b{n} = x + {n}", language))
        flows += [_flow(f"out{n}", "fork", f"branch{n}"), _flow(f"in{n}", f"branch{n}", "join")]
    return _document("parallel", nodes + flows)


def _document(process_id: str, elements: list[str]) -> str:
    body = "".join(elements)
    return f'{_HEAD}<process id="{process_id}" isExecutable="true">{body}</process></definitions>'


@dataclass(frozen=True)
class Scenario:
    name: str
    process_id: str
    model: Callable[[str], str]
    expected: dict[str, int]  # variables every finished instance must hold


SCENARIOS = (
    Scenario("sequence of 5 script tasks", "sequence", sequence_model, {"x": 5}),
    Scenario("parallel fork/join, 3 script branches", "parallel", parallel_model,
             {"x": 0, "b1": 1, "b2": 2, "b3": 3}),
)


class _Ids:
    def __init__(self) -> None:
        self._next = itertools.count(1)

    def new_id(self) -> str:
        return f"id-{next(self._next)}"


def flowcore_runner(scenario: Scenario) -> Callable[[], None]:
    from domain import engine
    from domain.definition_loader import load_definition
    from domain.state import InstanceStatus

    definition = load_definition(scenario.model("javascript"))

    def run_once() -> None:
        transition = engine.start(definition, instance_guid="bench", variables={"x": 0}, now=NOW, ids=_Ids())
        state = transition.state
        if state.status != InstanceStatus.COMPLETED or _subset(state.variables) != scenario.expected:
            raise RuntimeError(f"flowcore did not finish {scenario.name}: {state.status} {state.variables}")

    return run_once


def spiff_runner(scenario: Scenario) -> Callable[[], None]:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.util.task import TaskState

    parser = BpmnParser()
    parser.add_bpmn_str(scenario.model("python").encode())
    spec = parser.get_spec(scenario.process_id)

    def run_once() -> None:
        workflow = BpmnWorkflow(spec)
        workflow.get_tasks(state=TaskState.READY)[0].data.update({"x": 0})
        workflow.do_engine_steps()
        if not workflow.is_completed() or _subset(workflow.data) != scenario.expected:
            raise RuntimeError(f"SpiffWorkflow did not finish {scenario.name}: {workflow.data}")

    return run_once


def _subset(variables: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if k == "x" or k.startswith("b")}


def per_instance_us(run_once: Callable[[], object], instances: int, rounds: int, warmup: int) -> float:
    """Median over `rounds` of the CPU time per instance, in microseconds."""
    for _ in range(warmup):
        run_once()
    samples = []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(instances):
            run_once()
        samples.append((time.process_time() - began) / instances * 1e6)
    return statistics.median(samples)


def sandbox_costs(calls: int, rounds: int) -> list[tuple[str, float]]:
    """Per-call CPU time of the sandbox alone, on a warm cache."""
    from domain.scripting import evaluate_condition, run_script

    variables = {"amount": 1500, "customer": {"name": "Ann", "tier": "gold"}, "items": [1, 2, 3]}
    cases: list[tuple[str, Callable[[], object]]] = [
        ("condition `amount > 1000`", lambda: evaluate_condition("amount > 1000", variables)),
        ("condition `${customer.tier == 'gold'}`",
         lambda: evaluate_condition("${customer.tier == 'gold'}", variables)),
        ("script `x = x + 1`", lambda: run_script("x = x + 1", {"x": 0})),
        ("3-line script with return", lambda: run_script(
            "const total = items.reduce((a, b) => a + b, 0);\namount = amount + total;\n"
            "return { total, vip: customer.tier === 'gold' };", variables)),
    ]
    return [(label, per_instance_us(call, calls, rounds, warmup=200)) for label, call in cases]


def profile_flowcore(scenario: Scenario, instances: int, rounds: int) -> str:
    """Where flowcore's time goes for one scenario: the sandbox versus the rest of the engine.

    The split is measured without a profiler (cProfile inflates every Python call): the
    sandbox's entry points are wrapped with a CPU-time counter for a second set of rounds.
    The cProfile ranking after it shows the heaviest functions, in relative terms only.
    """
    from domain import scripting

    run_once = flowcore_runner(scenario)
    total = per_instance_us(run_once, instances, rounds, warmup=50)
    spent = [0.0]
    originals = {name: getattr(scripting, name) for name in ("run_script", "evaluate_condition")}

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.process_time() - began

        return wrapper

    for name, function in originals.items():
        setattr(scripting, name, timed(function))
    try:
        for _ in range(instances):
            run_once()
        spent[0] = 0.0
        wrapped_total = per_instance_us(run_once, instances, rounds, warmup=0)
        sandbox = spent[0] / (instances * rounds) * 1e6
    finally:
        for name, function in originals.items():
            setattr(scripting, name, function)

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(instances):
        run_once()
    profiler.disable()
    entries: dict[tuple[str, int, str], Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    own_total = sum(v[2] for v in entries.values())
    lines = [
        f"where flowcore's time goes, {scenario.name}:",
        f"  total                   {total:7.1f} µs/instance",
        f"  sandbox (script calls)  {sandbox:7.1f} µs/instance ({sandbox / wrapped_total:.0%})",
        f"  engine (everything else){wrapped_total - sandbox:7.1f} µs/instance "
        f"({1 - sandbox / wrapped_total:.0%})",
        "  heaviest functions by own time under cProfile (share of profiled time):",
    ]
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:10]
    for (path, line, name), (_, _, own, _cum, _) in ranked:
        where = path.split("/site-packages/")[-1].split("/work/main/")[-1]
        lines.append(f"    {own / own_total:5.1%}  {name}  ({where}:{line})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300, help="instances per round (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported (default 5)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed instances first (default 50)")
    parser.add_argument("--profile", action="store_true", help="also profile flowcore's side")
    args = parser.parse_args(argv)

    rows = []
    for scenario in SCENARIOS:
        ours = per_instance_us(flowcore_runner(scenario), args.instances, args.rounds, args.warmup)
        theirs = per_instance_us(spiff_runner(scenario), args.instances, args.rounds, args.warmup)
        rows.append((scenario.name, ours, theirs, theirs / ours))

    width = max(len(row[0]) for row in rows)
    print(f"{'scenario':<{width}} | flowcore µs/instance | SpiffWorkflow µs/instance | ratio")
    print(f"{'-' * width}-|----------------------|---------------------------|------")
    for name, ours, theirs, ratio in rows:
        print(f"{name:<{width}} | {ours:20.1f} | {theirs:25.1f} | {ratio:4.1f}x")
    missed = [name for name, _, _, ratio in rows if ratio < TARGET_RATIO]
    print(f"\ntarget: flowcore at least {TARGET_RATIO:.0f}x faster per instance — "
          + ("met" if not missed else f"missed for: {', '.join(missed)}"))

    print("\nsandbox alone, per call (warm cache):")
    for label, cost in sandbox_costs(calls=max(args.instances * 10, 1000), rounds=args.rounds):
        print(f"  {label:<45} {cost:7.1f} µs")

    if args.profile or missed:
        for scenario in SCENARIOS:
            print()
            print(profile_flowcore(scenario, args.instances, args.rounds))


if __name__ == "__main__":
    main()
