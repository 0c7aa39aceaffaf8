"""A deterministic research agent: it investigates a question over a real corpus of Python source.

Ask it "Where does the standard library use TaskGroup?". It pulls the search terms out of the
question, emits its plan as ``reasoning``, then runs real tools over the corpus, each reported
as a tool call (``tool.started`` / ``tool.completed``): ``list_packages``, one ``search`` per term
per package, one ``count`` per term, ``read_region`` around the strongest matches and one
``aggregate``. It then streams a report in which every claim cites ``relative/path.py:LINE``.
No network, no LLM: the same question over the same corpus gives the same report. The tools
live in ``_research_tools.py`` beside this file.

Corpus: the installed standard library source (``sysconfig.get_paths()["stdlib"]``) unless
``RESEARCH_CORPUS`` (or ``--corpus`` when run as a script) names another directory. Only
``*.py`` files are read; directories named ``test``, ``tests``, ``idlelib``, ``site-packages``,
``__pycache__`` or starting with ``.`` are skipped.

Environment:

* ``RESEARCH_CORPUS`` -- directory to research instead of the standard library.
* ``RESEARCH_STEP_DELAY`` -- seconds (a float >= 0, default 0) awaited between two tool calls,
  so that a turn lasts long enough to be checkpointed, cancelled or killed mid-way (the crash
  test uses it). Anything else is refused with a :class:`ValueError` naming the variable.
* ``RESEARCH_TOOL_LOG`` -- a file each tool execution appends its call id to (one line,
  ``O_APPEND`` and ``fsync``): an audit of what really ran (the resume tests count it).

Resume: every step is a :class:`runtime.Tool` run by ``turn.call_tool`` under a call id
derived from the step (``"3-search"``), the same on every attempt. A resumed turn
(``runtime resume``, or ``Runtime(resume="auto")`` after a crash) runs the plan again, but
each step whose result the tool ledger holds returns it without running, and without the
pause; the report is then the same as an uninterrupted run's. The tools only read the
corpus, so they are declared idempotent: a step killed mid-way is run again.

Run it::

    runtime run examples/research_agent.py:agent "Where does the standard library use TaskGroup?"
    python examples/research_agent.py --corpus DIR "Where is TaskGroup used?"
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.to_thread

from runtime import Tool

# The tools live beside this file. ``python examples/research_agent.py`` and ``runtime run`` put
# this directory on sys.path; other loaders (importlib by path, ``examples.research_agent``) not.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _research_tools import (  # noqa: E402
    KINDS,
    Corpus,
    Json,
    Term,
    aggregate,
    count,
    extract_terms,
    list_packages,
    read_files,
    read_region,
    search,
)

if TYPE_CHECKING:
    from runtime import Turn

__all__ = ["Plan", "Settings", "agent", "compose_report", "load_settings", "main", "make_plan"]

MAX_REGIONS = 8  # read_region calls per question
_SCOPE = re.compile(r"\b(?:in|inside|within|of|does|do|package|module)\s+(?:the\s+)?[`'\"]?(\w+)")


# --------------------------------------------------------------------------- settings


class Settings(NamedTuple):
    """What the environment configures: the corpus directory and the delay between tool calls
    (seconds)."""

    corpus: Path
    step_delay: float


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read ``RESEARCH_CORPUS`` and ``RESEARCH_STEP_DELAY`` (see the module docstring).

    :param environ: the environment to read; ``os.environ`` when ``None``.
    :raises ValueError: if ``RESEARCH_STEP_DELAY`` is not a finite number >= 0, or if
        ``RESEARCH_CORPUS`` is set but is not a directory.
    """
    env = os.environ if environ is None else environ
    raw_delay = env.get("RESEARCH_STEP_DELAY", "").strip()
    delay = 0.0
    if raw_delay:
        try:
            delay = float(raw_delay)
        except ValueError:
            delay = math.nan
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(
                f"RESEARCH_STEP_DELAY={raw_delay!r}: must be a number of seconds >= 0 (e.g. 0.2)"
            )
    raw_corpus = env.get("RESEARCH_CORPUS", "")
    if raw_corpus:
        corpus = Path(raw_corpus).expanduser()
        if not corpus.is_dir():
            raise ValueError(f"RESEARCH_CORPUS={raw_corpus!r}: must be an existing directory")
    else:
        corpus = Path(sysconfig.get_paths()["stdlib"])
    return Settings(corpus.resolve(), delay)


# --------------------------------------------------------------------------- plan


class Plan(NamedTuple):
    """What the agent will do: the terms and the packages it restricts itself to."""

    question: str
    terms: list[Term]
    scope: list[str]

    def describe(self, corpus: Corpus, step_delay: float) -> str:
        """The plan as text, for ``turn.reasoning``."""
        where = ", ".join(f"{p}/" for p in self.scope) if self.scope else "every package"
        lines = [f"Question: {self.question}", f"Corpus: {corpus.root}", f"Scope: {where}"]
        if self.terms:
            lines.append("Terms: " + "; ".join(t.describe() for t in self.terms))
        else:
            lines.append("Terms: none found in the question (no code names, no keywords).")
        lines += [
            "Steps: list_packages; search each term in each package; count per term;",
            f"read_region around up to {MAX_REGIONS} strongest matches (definitions first);",
            "aggregate per package; write a report citing path:line for every claim.",
        ]
        if step_delay:
            lines.append(f"Pausing {step_delay:g} s between tool calls (RESEARCH_STEP_DELAY).")
        return "\n".join(lines)


def make_plan(question: str, corpus: Corpus) -> Plan:
    """Pull the terms and the scope out of ``question`` (blocking: walks the corpus).

    The scope is every package the question names after "in", "inside", "within", "of",
    "does", "do", "package" or "module" ("How does asyncio use TaskGroup?").
    """
    packages = set(corpus.packages())
    scope: list[str] = []
    for match in _SCOPE.finditer(question):
        name = match.group(1)
        if name in packages and name not in scope:
            scope.append(name)
    return Plan(question, extract_terms(question, exclude=scope), scope)


# --------------------------------------------------------------------------- report

_KIND_PROSE = {
    "definition": "Defined or assigned",
    "import": "Imported",
    "export": "Exported in __all__",
    "call": "Called",
    "reference": "Referenced in code",
    "string": "Mentioned in strings or docstrings",
    "comment": "Mentioned in comments",
}
_KIND_HEAD = {
    "definition": "def",
    "import": "import",
    "export": "export",
    "call": "call",
    "reference": "ref",
    "string": "str",
    "comment": "comment",
}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _term_section(term: Term, tally: Json, matches: list[Json], part: str) -> list[str]:
    name = f"`{term.needle}`" if term.kind != "keyword" else f"`{term.needle}*`"
    if not tally["matching_lines"]:
        return [f"No line matches {name}: nothing to cite for it.", ""]
    lines = [
        f"{name}: {_n(tally['matching_lines'], 'matching line')} in {_n(tally['files'], 'file')} "
        f"across {_n(tally['packages'], part)}; the strongest in each: "
        + ", ".join(f"{r['package']} ({r['strongest']})" for r in tally["by_package"][:8])
        + (" …" if tally["packages"] > 8 else "")
        + ".",
    ]
    for kind in KINDS:
        n = tally["by_kind"].get(kind, 0)
        if not n:
            continue
        cited = [m for m in matches if m["kind"] == kind][:3]
        examples = "; ".join(f"{m['path']}:{m['line']} `{_cell(m['text'])}`" for m in cited)
        more = f" (and {n - len(cited)} more)" if n > len(cited) else ""
        lines.append(f"- {_KIND_PROSE[kind]} — {n}: {examples}{more}.")
    lines.append("")
    return lines


def compose_report(
    plan: Plan,
    inventory: Json,
    tallies: list[Json],
    term_matches: list[list[Json]],
    regions: list[Json],
    totals: Json,
    tool_calls: int,
) -> list[str]:
    """The report as lines (without newlines). Every claim about the corpus cites
    ``path:line``; a question with no terms or no matches gets a plain statement of that."""
    out = [f"## {plan.question.strip()}", ""]
    where = " (scope: " + ", ".join(f"{p}/" for p in plan.scope) + ")" if plan.scope else ""
    part = "module" if plan.scope else "package"  # what one search call covers
    out.append(
        f"Corpus: {inventory['corpus']}{where}: {_n(inventory['files'], 'Python file')} "
        f"({inventory['bytes'] / 1e6:.1f} MB) in {_n(len(inventory['units']), part)}, skipping "
        + ", ".join(f"{d}/" for d in inventory["skipped_dirs"])
        + f". {_n(tool_calls, 'tool call')}."
    )
    out.append("")
    if not inventory["files"]:
        out.append("The corpus holds no Python files to search, so there is nothing to report.")
        return out
    if not plan.terms:
        out.append(
            "I found nothing to search for in the question: no code name (like `TaskGroup` or "
            "`asyncio.gather`), no quoted text and no keyword beyond common words."
        )
        return out
    for term, tally, matches in zip(plan.terms, tallies, term_matches, strict=True):
        out += _term_section(term, tally, matches, part)
    if not totals["matching_lines"]:
        out.append(
            "Nothing in the corpus matches the question's terms, so there is nothing to cite."
        )
        return out
    out += [
        f"### Per {part}",
        "",
        f"| {part} | files | lines | "
        + " | ".join(_KIND_HEAD[k] for k in KINDS)
        + " | strongest |",
        "|---|---:|---:|" + "---:|" * len(KINDS) + "---|",
    ]
    for row in totals["by_package"]:
        cells = [row["package"], row["files"], row["lines"], *(row.get(k, 0) for k in KINDS)]
        out.append("| " + " | ".join(map(str, [*cells, row["strongest"]])) + " |")
    sums = " | ".join(str(sum(r.get(k, 0) for r in totals["by_package"])) for k in KINDS)
    out.append(f"| **total** | {totals['files']} | {totals['matching_lines']} | {sums} | |")
    out += ["", "### Strongest matches, read in context", ""]
    for i, region in enumerate(regions, 1):
        chain = " > ".join(
            f"{s['kind']} {s['name']} ({region['path']}:{s['line']})"
            for s in region["scope"]
            if s["line"] != region["line"]
        )
        inside = f" inside {chain}" if chain else " at module level"
        out.append(f"{i}. {region['path']}:{region['line']} ({region['kind']}){inside}:")
        out += [
            f"    {n:>5} {'>' if n == region['line'] else ' '} {text}"
            for n, text in region["lines"]
        ]
    out += ["", "### Files with the most matching lines", ""]
    out += [
        f"- {f['path']}:{f['first_line']} — {_n(f['lines'], 'line')}" for f in totals["top_files"]
    ]
    out += [
        "",
        f"In total: {_n(totals['matching_lines'], 'matching line')} in "
        f"{_n(totals['files'], 'file')} across {_n(totals['packages'], part)}; the "
        f"strongest is {totals['by_package'][0]['strongest']}.",
    ]
    return out


# --------------------------------------------------------------------------- the agent


def _log_execution(path: str, call_id: str) -> None:
    """Append ``call_id`` to the audit file, durably (blocking)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, call_id.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


class _Steps:
    """Runs tools as reported tool calls through the tool ledger, pausing ``delay`` seconds
    between two that really run."""

    def __init__(self, turn: Turn, corpus: Corpus, delay: float) -> None:
        self.turn = turn
        self.corpus = corpus
        self.delay = delay
        self.calls = 0
        self.ran = False  # the previous step ran (was not replayed from the ledger)
        self.log = os.environ.get("RESEARCH_TOOL_LOG", "")

    async def run(
        self,
        name: str,
        args: Json,
        fn: Callable[[], Json],
        *,
        blocking: bool,
        reads: tuple[str, ...] = (),
    ) -> Json:
        """Run ``fn`` as a reported tool call with the id ``"<n>-<name>"``, after reading
        the files ``reads`` through aiofiles; ``blocking`` work runs in a worker thread."""
        if self.ran and self.delay:
            await anyio.sleep(self.delay)
        self.calls += 1
        call_id = f"{self.calls}-{name}"

        async def execute(**_: Any) -> Json:
            await read_files(self.corpus, reads)
            value = await anyio.to_thread.run_sync(fn) if blocking else fn()
            if self.log:
                await anyio.to_thread.run_sync(_log_execution, self.log, call_id)
            return value

        call = await self.turn.call_tool(
            Tool(execute, name=name, idempotent=True), args, call_id=call_id
        )
        self.ran = not call.replayed
        if call.exception is not None:  # the tool message holds the error; end the turn
            raise call.exception
        if call.error is not None:  # failed before the turn was resumed
            raise RuntimeError(f"tool call {call_id} failed: {call.error}")
        result: Json = call.result
        return result


def _pick_regions(term_matches: list[list[Json]]) -> list[Json]:
    """The strongest match of each file, strongest files first, at most :data:`MAX_REGIONS`."""
    best: dict[str, Json] = {}
    for matches in term_matches:
        for m in matches:
            key = (KINDS.index(m["kind"]), m["line"])
            if m["path"] not in best or key < (
                KINDS.index(best[m["path"]]["kind"]),
                best[m["path"]]["line"],
            ):
                best[m["path"]] = m
    ranked = sorted(best.values(), key=lambda m: (KINDS.index(m["kind"]), m["path"], m["line"]))
    return ranked[:MAX_REGIONS]


async def agent(turn: Turn) -> None:
    """Research ``turn.user_message`` over the corpus and stream a cited report.

    :raises ValueError: if ``RESEARCH_STEP_DELAY`` or ``RESEARCH_CORPUS`` is invalid.
    """
    settings = load_settings()
    corpus = Corpus(settings.corpus)
    plan = await anyio.to_thread.run_sync(make_plan, turn.user_message, corpus)
    await turn.reasoning(plan.describe(corpus, settings.step_delay))
    steps = _Steps(turn, corpus, settings.step_delay)

    inventory = await steps.run(
        "list_packages",
        {"scope": plan.scope},
        functools.partial(list_packages, corpus, plan.scope),
        blocking=True,
    )
    units = corpus.units(plan.scope)
    all_results: list[Json] = []
    tallies: list[Json] = []
    term_matches: list[list[Json]] = []
    for term in plan.terms:
        results = []
        for unit in units:
            result = await steps.run(
                "search",
                {"term": term.needle, "kind": term.kind, "package": unit.name},
                functools.partial(search, corpus, term, unit),
                blocking=True,
                reads=unit.files,
            )
            results.append(result)
        all_results += results
        tallies.append(
            await steps.run(
                "count",
                {"term": term.needle},
                functools.partial(count, term, results),
                blocking=False,
            )
        )
        term_matches.append([m for r in results for m in r["matches"]])

    regions = []
    for match in _pick_regions(term_matches):
        region = await steps.run(
            "read_region",
            {"path": match["path"], "line": match["line"]},
            functools.partial(read_region, corpus, match["path"], match["line"]),
            blocking=True,
            reads=(match["path"],),
        )
        regions.append(region | {"kind": match["kind"]})
    totals: Json = {"matching_lines": 0}
    if plan.terms:
        totals = await steps.run(
            "aggregate",
            {"terms": [t.needle for t in plan.terms]},
            functools.partial(aggregate, all_results),
            blocking=False,
        )

    lines = compose_report(
        plan, inventory, tallies, term_matches, regions, totals, tool_calls=steps.calls
    )
    for line in lines[:-1]:
        await turn.token(line + "\n")
    await turn.reply(lines[-1])


# --------------------------------------------------------------------------- script


def main(argv: list[str] | None = None) -> int:
    """``python examples/research_agent.py [--corpus DIR] QUESTION...``: run one turn in a
    FileStore under the default root (``$RUNTIME_HOME`` or ``./.runtime``) and print its
    events: the report on stdout, the other events on stderr. Returns 0 if the turn ended with
    ``done``, else 1."""
    import argparse

    from runtime import FileStore, Runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--corpus", help="directory to research (default: the stdlib source)")
    parser.add_argument("question", nargs="+", help="the question, e.g. 'Where is TaskGroup used?'")
    args = parser.parse_args(argv)
    if args.corpus is not None:
        if not Path(args.corpus).is_dir():
            parser.error(f"--corpus {args.corpus!r}: must be an existing directory")
        os.environ["RESEARCH_CORPUS"] = args.corpus
    question = " ".join(args.question)

    async def run() -> int:
        outcome = "error"
        async with Runtime(FileStore(), agent) as rt:
            session = rt.new_session(title=question[:80])
            stream_id = await rt.start_turn(session.session_id, question)
            async for event in rt.events(stream_id):
                if event.type == "token":
                    print(event.data["text"], end="", flush=True)
                else:
                    shown = {k: v for k, v in event.data.items() if k != "result"}
                    print(f"[{event.seq}] {event.type} {str(shown)[:200]}", file=sys.stderr)
                    outcome = event.type if event.type != "stream.end" else outcome
            print(f"\nsession {session.session_id}", file=sys.stderr)
        return 0 if outcome == "done" else 1

    return anyio.run(run)


if __name__ == "__main__":
    sys.exit(main())
