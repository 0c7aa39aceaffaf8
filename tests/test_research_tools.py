"""The research agent's tools (examples/_research_tools.py) and its plan, settings and report
(examples/research_agent.py), on a small corpus written into ``tmp_path`` and, for one check,
on the real standard library source. Nothing is faked."""

from __future__ import annotations

import importlib
import re
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _import(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


tools = _import("_research_tools")
research = _import("research_agent")

CORE = '''"""Widget docs: a Widget is a thing."""

import os

__all__ = [
    "Widget",
    "make_widget",
]


class Widget:
    """The Widget."""

    def spin(self):
        # spin the Widget
        return make_widget(
            size=Widget,
        )


def make_widget():
    w = Widget()
    return w
'''
FILES = {
    "pkg/__init__.py": "from .core import (\n    Widget,\n)\n",
    "pkg/core.py": CORE,
    "pkg/test/test_core.py": "from pkg import Widget\n",
    "pkg/tests/helper.py": "Widget = None\n",
    "idlelib/gui.py": "Widget = 1\n",
    "site-packages/dep/mod.py": "Widget = 2\n",
    ".hidden/mod.py": "Widget = 3\n",
    "other/readme.txt": "Widget everywhere\n",
    "other/mod.py": "from pkg import Widget\nWIDGET_COUNT = 3\nx = Widget  # an alias\n",
    "top.py": "import pkg\npkg.Widget()\n",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Any:
    for rel, text in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tools.Corpus(tmp_path)


def _term(question: str) -> Any:
    (term,) = tools.extract_terms(question)
    return term


WIDGET = tools.Term("Widget", "identifier", "Widget")


def _line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` that contains ``needle``."""
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


# --------------------------------------------------------------------------- terms


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Where does the standard library use TaskGroup?", [("identifier", "TaskGroup")]),
        ("How is asyncio.gather() used?", [("identifier", "asyncio.gather")]),
        (
            "Which modules define __slots__ and call get_event_loop?",
            [("identifier", "__slots__"), ("identifier", "get_event_loop")],
        ),
        ("What's the origin of 'connection refused'?", [("quoted", "connection refused")]),
        ("Where is `TaskGroup` created?", [("identifier", "TaskGroup")]),
        ("Where are timeouts handled in the stdlib?", [("keyword", "timeout")]),
        (
            "How are HTTP redirects processed, e.g. 301?",
            [("keyword", "http"), ("keyword", "redirect"), ("keyword", "process")],
        ),
        ("Hello?", []),
        ("", []),
    ],
)
def test_extract_terms(question: str, expected: list[tuple[str, str]]) -> None:
    terms = tools.extract_terms(question)
    assert [(t.kind, t.needle) for t in terms] == expected


def test_keywords_are_capped_and_exclude_words() -> None:
    terms = tools.extract_terms("sockets buffers signals threads queues locks", exclude=["locks"])
    assert [t.needle for t in terms] == ["socket", "buffer", "signal", "thread"]


def test_identifier_pattern_is_whole_name_and_case_sensitive() -> None:
    pattern = _term("TaskGroup").pattern
    assert pattern.search("async with asyncio.TaskGroup() as tg:")
    assert not pattern.search("TaskGroups")
    assert not pattern.search("taskgroup")
    keyword = _term("timeouts").pattern
    assert keyword.search("self._timeout = None")
    assert keyword.search("raise TimeoutError")
    assert not keyword.search("notimeout")


# --------------------------------------------------------------------------- corpus


def test_corpus_skips_tests_idlelib_site_packages_hidden_and_non_python(corpus: Any) -> None:
    assert corpus.files() == ["other/mod.py", "pkg/__init__.py", "pkg/core.py", "top.py"]
    assert [u.name for u in corpus.units()] == [tools.TOP_LEVEL, "other", "pkg"]
    assert [(u.name, u.files) for u in corpus.units(["pkg"])] == [
        ("pkg/__init__.py", ("pkg/__init__.py",)),
        ("pkg/core.py", ("pkg/core.py",)),
    ]
    with pytest.raises(LookupError, match="'nope'"):
        corpus.unit("nope")


def test_list_packages(corpus: Any, tmp_path: Path) -> None:
    result = tools.list_packages(corpus)
    assert result["files"] == 4
    assert result["bytes"] == sum(
        (tmp_path / p).stat().st_size for p in FILES if p in corpus.files()
    )
    assert {u["name"]: u["files"] for u in result["units"]} == {
        tools.TOP_LEVEL: 1,
        "other": 1,
        "pkg": 2,
    }
    assert "test" in result["skipped_dirs"]


# --------------------------------------------------------------------------- search


def test_search_classifies_every_kind(corpus: Any) -> None:
    result = tools.search(corpus, WIDGET, corpus.unit("pkg"))
    kinds = {(m["path"], m["line"]): m["kind"] for m in result["matches"]}
    core = "pkg/core.py"
    assert kinds == {
        ("pkg/__init__.py", 2): "import",  # inside a parenthesised multi-line import
        (core, 1): "string",  # module docstring
        (core, _line_of(CORE, '"Widget",')): "export",
        (core, _line_of(CORE, "class Widget")): "definition",
        (core, _line_of(CORE, '"""The Widget."""')): "string",
        (core, _line_of(CORE, "# spin")): "comment",
        (core, _line_of(CORE, "size=Widget")): "reference",  # a keyword argument, not assigned
        (core, _line_of(CORE, "w = Widget()")): "call",
    }
    assert result["matching_lines"] == 8
    assert result["files_with_matches"] == 2
    assert result["by_kind"] == {
        "definition": 1,
        "import": 1,
        "export": 1,
        "call": 1,
        "reference": 1,
        "string": 2,
        "comment": 1,
    }
    assert result["by_file"] == {
        "pkg/__init__.py": {"lines": 1, "first_line": 2},
        core: {"lines": 7, "first_line": 1},
    }
    assert result["matches"][0]["kind"] == "definition"  # strongest first
    assert result["matches"][0]["text"] == "class Widget:"
    assert result["lines_scanned"] == 4 + len(CORE.split("\n"))


def test_search_assignment_alias_and_prefix_keyword(corpus: Any) -> None:
    other = tools.search(corpus, WIDGET, corpus.unit("other"))
    assert [(m["line"], m["kind"]) for m in other["matches"]] == [(1, "import"), (3, "reference")]
    top = tools.search(corpus, WIDGET, corpus.unit(tools.TOP_LEVEL))
    assert [(m["path"], m["line"], m["kind"]) for m in top["matches"]] == [("top.py", 2, "call")]
    keyword = tools.search(corpus, _term("widgets"), corpus.unit("other"))
    assert [(m["line"], m["kind"]) for m in keyword["matches"]] == [  # strongest first
        (2, "definition"),  # WIDGET_COUNT = 3
        (1, "import"),
        (3, "reference"),
    ]


def test_search_caps_the_match_list_but_counts_everything(tmp_path: Path) -> None:
    body = "".join(f"# Widget note {i}\n" for i in range(30)) + "class Widget:\n    pass\n"
    (tmp_path / "big.py").write_text(body, encoding="utf-8")
    corpus = tools.Corpus(tmp_path)
    result = tools.search(corpus, WIDGET, corpus.unit(tools.TOP_LEVEL))
    assert result["matching_lines"] == 31
    assert result["by_kind"] == {"definition": 1, "comment": 30}
    assert len(result["matches"]) == tools.MATCH_CAP
    assert result["truncated"] is True
    assert result["matches"][0] == {
        "path": "big.py",
        "line": 31,
        "kind": "definition",
        "text": "class Widget:",
    }


def test_search_keeps_examples_of_rare_kinds_past_the_cap(tmp_path: Path) -> None:
    body = "".join(f"Widget{i} = Widget()\n" for i in range(30)) + "# one Widget comment\n"
    (tmp_path / "many.py").write_text(body, encoding="utf-8")
    corpus = tools.Corpus(tmp_path)
    result = tools.search(corpus, WIDGET, corpus.unit(tools.TOP_LEVEL))
    assert len(result["matches"]) == tools.MATCH_CAP
    assert [m["line"] for m in result["matches"] if m["kind"] == "comment"] == [31]


def test_search_survives_a_file_that_does_not_tokenize(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text('x = (Widget\ns = """Widget\n', encoding="utf-8")
    corpus = tools.Corpus(tmp_path)
    result = tools.search(corpus, WIDGET, corpus.unit(tools.TOP_LEVEL))
    assert result["matching_lines"] == 2


# --------------------------------------------------------------------------- read_region


def test_read_region_gives_lines_and_enclosing_scopes(corpus: Any) -> None:
    line = _line_of(CORE, "# spin")
    region = tools.read_region(corpus, "pkg/core.py", line)
    assert (region["start"], region["end"]) == (line - 3, line + 3)
    assert region["lines"][3] == [line, "        # spin the Widget"]
    assert [(s["kind"], s["name"], s["line"]) for s in region["scope"]] == [
        ("class", "Widget", _line_of(CORE, "class Widget")),
        ("def", "spin", _line_of(CORE, "def spin")),
    ]
    first = tools.read_region(corpus, "pkg/core.py", 1)
    assert first["start"] == 1
    assert first["scope"] == []


def test_read_region_refuses_bad_paths_and_lines(corpus: Any) -> None:
    with pytest.raises(LookupError, match=re.escape("pkg/test/test_core.py")):
        tools.read_region(corpus, "pkg/test/test_core.py", 1)  # skipped directory
    with pytest.raises(LookupError, match=re.escape("missing.py")):
        tools.read_region(corpus, "missing.py", 1)
    with pytest.raises(ValueError, match="line 999"):
        tools.read_region(corpus, "top.py", 999)
    with pytest.raises(ValueError, match="line 0"):
        tools.read_region(corpus, "top.py", 0)


# --------------------------------------------------------------------------- tallies


def test_count_and_aggregate(corpus: Any) -> None:
    term = WIDGET
    results = [tools.search(corpus, term, unit) for unit in corpus.units()]
    tally = tools.count(term, results)
    assert tally["matching_lines"] == 8 + 2 + 1
    assert tally["files"] == 4
    assert tally["packages"] == 3
    assert tally["by_package"][0] == {
        "package": "pkg",
        "lines": 8,
        "files": 2,
        "strongest": f"pkg/core.py:{_line_of(CORE, 'class Widget')}",
    }
    totals = tools.aggregate(results)
    assert totals["matching_lines"] == tally["matching_lines"]
    assert totals["files"] == 4
    assert [(r["package"], r["files"], r["lines"]) for r in totals["by_package"]] == [
        ("pkg", 2, 8),
        ("other", 1, 2),
        (tools.TOP_LEVEL, 1, 1),
    ]
    assert totals["by_package"][0]["definition"] == 1
    assert totals["top_files"][0] == {"path": "pkg/core.py", "lines": 7, "first_line": 1}


# --------------------------------------------------------------------------- settings and plan


def test_load_settings_defaults_to_the_stdlib() -> None:
    settings = research.load_settings({})
    assert settings.corpus == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert settings.step_delay == 0.0


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "1s"])
def test_bad_step_delay_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=f"RESEARCH_STEP_DELAY={value!r}"):
        research.load_settings({"RESEARCH_STEP_DELAY": value})


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = research.load_settings(
        {"RESEARCH_STEP_DELAY": "0.25", "RESEARCH_CORPUS": str(tmp_path)}
    )
    assert settings == research.Settings(tmp_path.resolve(), 0.25)
    with pytest.raises(ValueError, match=r"RESEARCH_CORPUS=.*must be an existing directory"):
        research.load_settings({"RESEARCH_CORPUS": str(tmp_path / "missing")})


def test_plan_scopes_to_a_named_package(corpus: Any) -> None:
    plan = research.make_plan("How does pkg use Widget?", corpus)
    assert plan.scope == ["pkg"]
    assert [t.needle for t in plan.terms] == ["Widget"]
    keywords = research.make_plan("Where in pkg are widgets spun?", corpus)
    assert keywords.scope == ["pkg"]
    assert [t.needle for t in keywords.terms] == ["widget", "spun"]
    assert research.make_plan("Where is Widget used?", corpus).scope == []


# --------------------------------------------------------------------------- report


def _report(corpus: Any, question: str) -> list[str]:
    plan = research.make_plan(question, corpus)
    inventory = tools.list_packages(corpus, plan.scope)
    results, tallies, term_matches = [], [], []
    for term in plan.terms:
        found = [tools.search(corpus, term, unit) for unit in corpus.units(plan.scope)]
        results += found
        tallies.append(tools.count(term, found))
        term_matches.append([m for r in found for m in r["matches"]])
    regions = [
        tools.read_region(corpus, m["path"], m["line"]) | {"kind": m["kind"]}
        for m in research._pick_regions(term_matches)
    ]
    totals = tools.aggregate(results)
    return research.compose_report(
        plan, inventory, tallies, term_matches, regions, totals, tool_calls=7
    )


def test_report_cites_real_lines(corpus: Any, tmp_path: Path) -> None:
    lines = _report(corpus, "Where is Widget used?")
    text = "\n".join(lines)
    citations = re.findall(r"([\w./-]+\.py):(\d+)", text)
    assert len(citations) > 10
    for path, line in citations:
        source = (tmp_path / path).read_text(encoding="utf-8").split("\n")
        cited = source[int(line) - 1]
        assert "Widget" in cited or re.match(r"\s*(class|def) ", cited), (path, line)
    assert "11 matching lines in 4 files across 3 packages" in text
    assert "| pkg | 2 | 8 | 1 | 1 | 1 | 1 | 1 | 2 | 1 | pkg/core.py:" in text
    assert f"pkg/core.py:{_line_of(CORE, 'class Widget')} (definition) at module level:" in text
    assert "top.py:2 (call) at module level:" in text


def test_report_says_plainly_when_nothing_matches(corpus: Any) -> None:
    text = "\n".join(_report(corpus, "Where is FrobnicatorGadget used?"))
    assert "No line matches `FrobnicatorGadget`" in text
    assert "nothing to cite" in text
    assert "| pkg |" not in text
    text = "\n".join(_report(corpus, "Hello?"))
    assert "nothing to search for" in text


# --------------------------------------------------------------------------- real corpus


def test_finds_taskgroup_in_the_real_stdlib_asyncio() -> None:
    """The installed standard library source, as the agent sees it by default."""
    corpus = tools.Corpus(research.load_settings({}).corpus)
    result = tools.search(corpus, _term("TaskGroup"), corpus.unit("asyncio"))
    assert result["matching_lines"] >= 1
    assert any(m["path"].startswith("asyncio/") for m in result["matches"])
    assert any(m["kind"] == "definition" for m in result["matches"])


# --------------------------------------------------------------------------- the agent, end to end


async def _run_agent(question: str) -> tuple[list[Any], Any]:
    from runtime import MemoryStore, Runtime

    async with Runtime(MemoryStore(), research.agent) as rt:
        session = rt.new_session()
        stream_id = await rt.start_turn(session.session_id, question)
        events = [event async for event in rt.events(stream_id)]
        await rt.wait_stream(stream_id)
        return events, await rt.get_session(session.session_id)


async def test_agent_streams_tool_steps_and_a_cited_report(
    corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent under the real Runtime with the reference MemoryStore, on the tmp corpus."""
    monkeypatch.setenv("RESEARCH_CORPUS", str(corpus.root))
    monkeypatch.setenv("RESEARCH_STEP_DELAY", "0.001")
    events, session = await _run_agent("Where is Widget used?")
    types = [e.type for e in events]
    assert types[:2] == ["stream.started", "reasoning"]
    assert types[-3:] == ["message", "done", "stream.end"]
    assert "`Widget` (identifier" in events[1].data["text"]
    assert "Pausing 0.001 s between tool calls" in events[1].data["text"]
    started = [e.data for e in events if e.type == "tool.started"]
    completed = [e.data for e in events if e.type == "tool.completed"]
    assert [s["call_id"] for s in started] == [c["call_id"] for c in completed]
    assert all(c["error"] is None for c in completed)
    names = [s["name"] for s in started]
    # list_packages; search x 3 packages; count; read_region x 4 files; aggregate
    assert names == ["list_packages"] + ["search"] * 3 + ["count"] + ["read_region"] * 4 + [
        "aggregate"
    ]
    last_tool = max(i for i, t in enumerate(types) if t == "tool.completed")
    assert types.index("token") > last_tool
    report = "".join(e.data["text"] for e in events if e.type == "token")
    assert f"{len(names)} tool calls." in report
    assert "11 matching lines in 4 files across 3 packages" in report
    assert session.messages[-1]["content"] == report
    assert sum(1 for m in session.messages if m["role"] == "tool") == len(names)


async def test_agent_reports_a_bad_step_delay(corpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEARCH_CORPUS", str(corpus.root))
    monkeypatch.setenv("RESEARCH_STEP_DELAY", "soon")
    events, _ = await _run_agent("Where is Widget used?")
    assert [e.type for e in events][-2:] == ["error", "stream.end"]
    assert "RESEARCH_STEP_DELAY='soon'" in str(events[-2].data)
    assert not any(e.type == "tool.started" for e in events)


async def test_read_files_reads_through_aiofiles_into_the_corpus(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "b.py").write_bytes(b"y = '\xff'\n")  # not UTF-8: replaced, not refused
    corpus = tools.Corpus(tmp_path)
    await tools.read_files(corpus, ["a.py", "b.py", "gone.py", "a.py"])
    (tmp_path / "a.py").unlink()  # already in memory: the tools no longer touch the disk
    assert corpus.text("a.py") == "x = 1\n"
    assert corpus.text("b.py") == "y = '\ufffd'\n"
    assert corpus.text("gone.py") == ""
    assert corpus.unreadable == ["gone.py"]


def test_llm_agent_tools_have_schemas_from_their_docstrings(tmp_path: Path) -> None:
    pytest.importorskip("pydantic")
    from runtime.agents import function_tool

    llm = _import("llm_agent")
    specs = [
        function_tool(fn).spec()["function"] for fn in llm.research_tools(tools.Corpus(tmp_path))
    ]
    assert [s["name"] for s in specs] == ["list_packages", "search", "read_region"]
    search = specs[1]["parameters"]
    assert search["required"] == ["term"]
    assert search["properties"]["term"]["description"].startswith("an identifier such as")


async def test_llm_agent_search_and_read_region_over_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(CORE, encoding="utf-8")
    llm = _import("llm_agent")
    list_packages, search, read_region = llm.research_tools(tools.Corpus(tmp_path))
    assert (await list_packages())["units"][0]["name"] == "pkg"
    found = await search("Widget", package="pkg")
    assert found["matching_lines"] >= 3
    assert found["matches"][0]["kind"] == "definition"
    with pytest.raises(LookupError, match="no package 'nope'"):
        await search("Widget", package="nope")
    region = await read_region(found["matches"][0]["path"], found["matches"][0]["line"])
    assert any("class Widget" in text for _, text in region["lines"])


def test_llm_agent_settings_are_checked() -> None:
    llm = _import("llm_agent")
    with pytest.raises(ValueError, match="RUNTIME_MODEL is not set"):
        llm.make_agent({})
    with pytest.raises(ValueError, match="RUNTIME_TOOLS='all'"):
        llm.make_agent({"RUNTIME_MODEL": "m", "RUNTIME_TOOLS": "all"})
    with pytest.raises(ValueError, match="RUNTIME_MAX_TOKENS='-3'"):
        llm.make_agent({"RUNTIME_MODEL": "m", "RUNTIME_MAX_TOKENS": "-3"})
