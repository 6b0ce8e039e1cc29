"""The QuickJS realm that runs conditions and scripts, one per thread, reused across evaluations.

A quickjs context costs about 0.2 ms to create, so each thread keeps one (quickjs contexts must
never be touched from two threads) together with an LRU of compiled sources. Reuse is safe
because the prelude freezes every reachable builtin, prototype and the global object before any
user code runs, and every evaluation reads and writes its variables through a fresh Proxy used
as a `with` scope: undeclared assignments land in that evaluation's variable map, never on
`globalThis`. Data crosses the boundary only as JSON text, and every answer comes back as one
string whose first character says what it is, so no JS object ever reaches Python.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import quickjs

# The prelude runs once per context and returns the compiler. It captures every builtin it
# relies on before freezing, so nothing user code does afterwards can change its behaviour.
_PRELUDE: Final = r"""
(() => {
  'use strict';
  const G = globalThis;
  const { freeze, getPrototypeOf, getOwnPropertyDescriptor, getOwnPropertyDescriptors } = Object;
  const { defineProperty, hasOwn } = Object;
  const ownKeys = Reflect.ownKeys;
  const apply = Reflect.apply;
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const fnToString = Function.prototype.toString;
  const indirectEval = eval;
  const ProxyC = Proxy;
  const SetC = Set;
  const ErrorC = Error;
  const SyntaxErrorC = SyntaxError;
  const TypeErrorC = TypeError;
  const ReferenceErrorC = ReferenceError;
  const StringC = String;
  // quickjs-ng builds long concatenations as ropes, which the Python binding cannot read;
  // slicing makes a flat copy. (Methods are called directly below: once the realm is frozen,
  // no user code can replace them.)
  const flat = (s) => (s.length > 256 ? s.slice(0) : s);

  class BpmnError extends Error {
    constructor(code, message) {
      const c = StringC(code);
      super(message === undefined || message === null ? c : StringC(message));
      defineProperty(this, 'code', { value: c, writable: true, enumerable: true, configurable: true });
    }
  }
  defineProperty(BpmnError.prototype, 'name', { value: 'BpmnError', writable: true, configurable: true });
  defineProperty(G, 'BpmnError', { value: BpmnError, writable: true, configurable: true });

  // These two are accessors over per-context state: freezing would not stop their setters, so
  // one evaluation could change how the next one's errors look. Pin them as plain values.
  for (const name of ['prepareStackTrace', 'stackTraceLimit']) {
    const d = getOwnPropertyDescriptor(ErrorC, name);
    if (d && d.get) {
      defineProperty(ErrorC, name, { value: apply(d.get, ErrorC, []), writable: false, configurable: false });
    }
  }

  // Freezing prototypes makes `obj.toString = ...` or `err.name = ...` fail because the
  // inherited property is read-only. Turn those few data properties into accessors whose
  // setter gives the receiver its own property instead.
  const tame = (proto, names) => {
    for (const name of names) {
      const d = getOwnPropertyDescriptor(proto, name);
      if (!d || !('value' in d)) continue;
      const value = d.value;
      defineProperty(proto, name, {
        get() { return value; },
        set(v) {
          if (this === proto) throw new TypeErrorC(`cannot assign to read only property '${name}'`);
          defineProperty(this, name, { value: v, writable: true, enumerable: true, configurable: true });
        },
        enumerable: d.enumerable,
        configurable: false,
      });
    }
  };
  tame(Object.prototype, ['constructor', 'toString', 'toLocaleString', 'valueOf', 'hasOwnProperty',
                          'isPrototypeOf', 'propertyIsEnumerable']);
  tame(Function.prototype, ['toString']);
  for (const E of [Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError,
                   AggregateError, BpmnError]) {
    tame(E.prototype, ['name', 'message', 'constructor', 'toString']);
  }

  // The variable map is a `with` scope: these names must never resolve on it. Every plain
  // object inherits this, so the map needs no per-evaluation setup.
  defineProperty(Object.prototype, Symbol.unscopables, {
    value: freeze({ __proto__: null, context: true, undefined: true, NaN: true, Infinity: true }),
  });

  // Freeze everything reachable from the global object, plus the intrinsics that are only
  // reachable through syntax (generator, async and iterator prototypes).
  const hidden = [
    getPrototypeOf(function* () {}), getPrototypeOf(async function () {}),
    getPrototypeOf(async function* () {}), getPrototypeOf((function* () {})()),
    getPrototypeOf((async function* () {})()), getPrototypeOf([][Symbol.iterator]()),
    getPrototypeOf(new Map()[Symbol.iterator]()), getPrototypeOf(new Set()[Symbol.iterator]()),
    getPrototypeOf(''[Symbol.iterator]()), getPrototypeOf(/x/[Symbol.matchAll]('')),
    getPrototypeOf(Int8Array), getPrototypeOf([].values().map((x) => x)),
    (function () { return arguments; })(),
  ];
  const seen = new SetC();
  const todo = [G, ...hidden];
  while (todo.length > 0) {
    const o = todo.pop();
    if ((typeof o !== 'object' && typeof o !== 'function') || o === null || seen.has(o)) continue;
    seen.add(o);
    freeze(o);
    todo.push(getPrototypeOf(o));
    const ds = getOwnPropertyDescriptors(o);
    for (const k of ownKeys(ds)) {
      const d = ds[k];
      todo.push(d.value, d.get, d.set);
    }
  }

  const describe = (e) => {
    try {
      const text = e instanceof ErrorC
        ? StringC(e.name) + ': ' + StringC(e.message)
        : 'Uncaught ' + StringC(e);
      return text.length > 2000 ? text.slice(0, 2000) + '…' : text;
    } catch (_) {
      return 'Uncaught exception';
    }
  };
  const format = (v) => {
    if (v === undefined) return '';
    if (typeof v === 'object') return stringify(v) ?? '';
    return StringC(v);
  };

  // Every evaluation runs inside `with (proxy) with (vars)`. Names the variable map holds
  // resolve on the map itself, natively; everything else reaches the proxy, which sends
  // globals on to the global object, answers `context` with the map, and claims every other
  // name: assigning one creates a variable, reading one fails with its name (or gives
  // undefined for names the source tests with `typeof`, held in `lenient`). The map's
  // @@unscopables (see above) keeps `context` and the three global values from being shadowed.
  const makeHandler = (lenient) => freeze({
    has(t, k) {
      return typeof k === 'string' && (k === 'context' || !(k in G));
    },
    get(t, k) {
      if (k === 'context') return t;
      if (typeof k !== 'string') return undefined;
      if (hasOwn(t, k)) return t[k];
      if (lenient.has(k)) return undefined;
      throw new ReferenceErrorC(`variable '${k}' is not defined`);
    },
    set(t, k, v) {
      if (k === 'context') throw new TypeErrorC("'context' cannot be reassigned; assign its fields instead");
      defineProperty(t, k, { value: v, writable: true, enumerable: true, configurable: true });
      return true;
    },
  });

  const notJson = (what) => new TypeErrorC(`${what} is not JSON-serialisable`);

  const run = (f, handler, mode, json) => flat(answer(f, handler, mode, json));
  const answer = (f, handler, mode, json) => {
    let vars;
    try {
      vars = parse(json);
    } catch (e) {
      return 'E' + describe(e);
    }
    let r;
    try {
      r = f(new ProxyC(vars, handler));
    } catch (e) {
      try {
        if (e instanceof BpmnError) return 'B' + stringify([StringC(e.code), StringC(e.message)]);
      } catch (_) { /* fall through to the generic description */ }
      return 'E' + describe(e);
    }
    try {
      if (mode === 'c') return r ? 'T' : 'F';
      if (mode === 't') return 'R' + stringify(format(r));
      const rj = r === undefined ? 'null' : stringify(r);
      if (rj === undefined) throw notJson('the result');
      if (mode === 'e') return 'R' + rj;
      const vj = stringify(vars);
      if (vj === undefined || vj[0] !== '{') throw notJson('the variable map');
      return 'R[' + vj + ',' + rj + ']';
    } catch (e) {
      return 'J' + describe(e);
    }
  };

  // Compiles one wrapper text. The function's source must be exactly the text handed in:
  // anything else means the user's code closed the wrapper early, which is refused.
  return (text, lenientNames, mode) => {
    let f;
    try {
      f = indirectEval('(' + text + ')');
    } catch (e) {
      if (e instanceof SyntaxErrorC) return flat('S' + describe(e) + '\n' + StringC(e.stack));
      return flat('E' + describe(e));
    }
    if (typeof f !== 'function' || apply(fnToString, f, []) !== text) return 'X';
    freeze(f);
    const handler = makeHandler(new SetC(parse(lenientNames)));
    return freeze((json) => run(f, handler, mode, json));
  };
})()
"""

# Tags that start every answer from the realm.
OK, BPMN, ERROR, NOT_JSON, TRUE, FALSE = "R", "B", "E", "J", "T", "F"
SYNTAX, ESCAPED = "S", "X"

# What a source is compiled as: a condition (answers T/F), an expression (its JSON value), a
# template placeholder (its text) or a script body (variable map and returned value).
CONDITION, EXPRESSION, TEMPLATE, SCRIPT = "c", "e", "t", "s"

# The user's code always starts on the wrapper's second line, so reported lines shift by one.
# The inner function is strict: assigning to a frozen builtin fails loudly instead of silently.
_SCRIPT_HEAD: Final = '(__s) => { with (__s) with (context) { return (function () { "use strict";\n'
_SCRIPT_TAIL: Final = "\n}).call(undefined); } }"
_EXPR_HEAD: Final = '(__s) => { with (__s) with (context) { return (() => { "use strict"; return (\n'
_EXPR_TAIL: Final = "\n); })(); } }"
_LINE_OFFSET: Final = 1

_MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    time_ms: int = 200  # CPU time per evaluation (and per compilation)
    memory_bytes: int = 32 * _MIB  # the whole JS heap of the thread's context
    max_source_chars: int = 100_000
    max_stack_bytes: int = 256 * 1024
    # how many bytes of JSON the answer may add to the JSON handed in
    max_result_bytes: int = _MIB


DEFAULT_LIMITS: Final = SandboxLimits()


class RealmFailure(Exception):
    """The realm itself failed (a limit was hit, or the binding could not pass a value)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceProblem(Exception):
    """A source that does not compile; `line`/`column` are positions in the user's source."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def limit_message(limits: SandboxLimits, raw: str) -> str:
    """Turns a failure that escaped the JS runner into the sentence users see."""
    if "interrupted" in raw:
        return f"Script exceeded its CPU time limit of {limits.time_ms} ms"
    first = raw.strip().splitlines()[0] if raw.strip() else ""
    if "out of memory" in raw:
        return f"Script exceeded its memory limit of {_size(limits.memory_bytes)}"
    if first in ("null", "", "Uncaught null"):
        # quickjs throws null when it cannot even allocate the error object
        return f"Script ran out of memory (limit {_size(limits.memory_bytes)}) or threw null"
    return f"Script failed inside the sandbox: {first}"


def _size(n: int) -> str:
    return f"{n // _MIB} MiB" if n % _MIB == 0 else f"{n} bytes"


# Draining the job queue costs a call into the realm (~1 µs with a time limit armed), so it
# happens right after sources that name promise machinery, and otherwise every few calls.
_QUEUES_JOBS = re.compile(r"async|await|Promise|then|queueMicrotask|FinalizationRegistry|import|waitAsync")
_SWEEP_EVERY: Final = 64

_TYPEOF = re.compile(r"\btypeof\s*\(?\s*([A-Za-z_$][\w$]*)")
_LOCATION = re.compile(r":(\d+):(\d+)")


class _Realm:
    """One quickjs context with the prelude installed, and the functions compiled in it."""

    def __init__(self, limits: SandboxLimits, cache_size: int) -> None:
        self.context = quickjs.Context()
        self.limits = limits
        self._apply(limits)
        self.compile = self.context.eval(_PRELUDE)
        # (mode, source) -> (compiled function, whether the source visibly queues promise jobs)
        self.cache: OrderedDict[tuple[str, str], tuple[Any, bool]] = OrderedDict()
        self.cache_size = cache_size
        self.calls = 0

    def _apply(self, limits: SandboxLimits) -> None:
        self.context.set_time_limit(limits.time_ms / 1000)
        self.context.set_memory_limit(limits.memory_bytes)
        self.context.set_max_stack_size(limits.max_stack_bytes)

    def drain_jobs(self) -> None:
        """Runs queued promise jobs; they would otherwise wait in the runtime forever."""
        while self.context.execute_pending_job():
            pass

    def use(self, limits: SandboxLimits) -> None:
        if limits is not self.limits and limits != self.limits:
            self._apply(limits)
            self.limits = limits


class Sandbox:
    """Per-thread realms plus their compile-once caches; the only owner of quickjs objects."""

    def __init__(self, cache_size: int = 512) -> None:
        self._local = threading.local()
        self._cache_size = cache_size

    def compile(self, mode: str, source: str, limits: SandboxLimits) -> None:
        """Compiles `source` into this thread's cache; raises SourceProblem or RealmFailure."""
        realm = self._realm(limits)
        if (mode, source) not in realm.cache:
            self._compile(realm, mode, source, limits)

    def evaluate(self, mode: str, source: str, json_text: str, limits: SandboxLimits) -> str:
        """Runs `source` on one variable map (JSON text); returns the realm's tagged answer."""
        realm = self._realm(limits)
        key = (mode, source)
        entry = realm.cache.get(key)
        if entry is None:
            entry = self._compile(realm, mode, source, limits)
        else:
            realm.cache.move_to_end(key)
        fn, queues_jobs = entry
        try:
            answer = fn(json_text)
            if queues_jobs:
                realm.drain_jobs()
        except quickjs.JSException as exc:
            self._discard()
            raise RealmFailure(limit_message(limits, str(exc))) from None
        except Exception as exc:  # the binding could not hand the answer over (encoding)
            raise RealmFailure(f"Script produced a value the sandbox cannot return: {exc}") from None
        if not isinstance(answer, str):
            self._discard()
            raise RealmFailure("Script sandbox returned an unexpected answer")
        if answer[:1] == ERROR and ("out of memory" in answer or answer == "EUncaught null"):
            self._discard()
            raise RealmFailure(limit_message(limits, answer[1:]))
        realm.calls += 1
        if not queues_jobs and realm.calls % _SWEEP_EVERY == 0:
            self._sweep(realm)
        return answer

    def _sweep(self, realm: _Realm) -> None:
        # Jobs from sources that hide their use of promises run here. They cannot reach the
        # answer just computed (it is already a string), so a failure among them only costs
        # the realm, never this evaluation.
        try:
            realm.drain_jobs()
        except Exception:
            self._discard()

    def _realm(self, limits: SandboxLimits) -> _Realm:
        realm: _Realm | None = getattr(self._local, "realm", None)
        if realm is None:
            try:
                realm = _Realm(limits, self._cache_size)
            except Exception as exc:  # a realm that cannot even start is a sandbox failure
                raise RealmFailure(f"Script sandbox could not start: {exc}") from None
            self._local.realm = realm
        else:
            realm.use(limits)
        return realm

    def _discard(self) -> None:
        # after a limit was hit the context may be unusable; the next call builds a fresh one
        self._local.realm = None

    def _compile(self, realm: _Realm, mode: str, source: str, limits: SandboxLimits) -> tuple[Any, bool]:
        head, tail = (_SCRIPT_HEAD, _SCRIPT_TAIL) if mode == SCRIPT else (_EXPR_HEAD, _EXPR_TAIL)
        wrapper = head + source + tail
        lenient = "[" + ",".join(f'"{name}"' for name in sorted(set(_TYPEOF.findall(source)))) + "]"
        try:
            answer = realm.compile(wrapper, lenient, mode)
        except quickjs.JSException as exc:
            self._discard()
            raise RealmFailure(limit_message(limits, str(exc))) from None
        except Exception as exc:  # e.g. a NUL character or lone surrogate the binding cannot pass
            raise SourceProblem(f"the source cannot be passed to the JavaScript engine ({exc})") from None
        if isinstance(answer, str):
            raise _source_problem(answer, source)
        entry = (answer, _QUEUES_JOBS.search(source) is not None)
        realm.cache[(mode, source)] = entry
        if len(realm.cache) > realm.cache_size:
            realm.cache.popitem(last=False)
        return entry


def _source_problem(answer: str, source: str) -> Exception:
    tag, text = answer[:1], answer[1:]
    if tag == ESCAPED:
        return SourceProblem("The code closes the block it is placed in (unbalanced braces or parentheses)")
    if tag != SYNTAX:
        return RealmFailure(f"Script failed while compiling: {text}")
    message, _, stack = text.partition("\n")
    where = _LOCATION.search(stack)
    if where is None:
        return SourceProblem(message)
    last_line = source.count("\n") + 1
    line = int(where.group(1)) - _LINE_OFFSET
    if 1 <= line <= last_line:
        return SourceProblem(message, line, int(where.group(2)))
    # the parser only noticed at the wrapper's end: the code stops too early
    return SourceProblem(message, min(max(line, 1), last_line))


SANDBOX: Final = Sandbox()
