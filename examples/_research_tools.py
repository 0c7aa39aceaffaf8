"""The tools of the research agent (``research_agent.py``): plain, blocking functions over a
corpus of Python source files.

* :func:`extract_terms` -- what to search for, pulled out of a question;
* :class:`Corpus` -- the ``*.py`` files under a root, split into :class:`Unit` s (packages);
* :func:`read_files` -- read files into a corpus through aiofiles, so that the tools below only
  compute (async code never blocks on file I/O);
* :func:`list_packages`, :func:`search`, :func:`read_region` -- work over the files (call them
  from a worker thread, e.g. ``anyio.to_thread.run_sync``; a file not read with
  :func:`read_files` first is read there); :func:`count` and :func:`aggregate` -- tally search
  results.

Every tool returns a compact JSON-able dict: tallies, at most :data:`MATCH_CAP` matches with
``path``, ``line`` and the line's text, never whole files. Paths are relative to the corpus root.
"""

from __future__ import annotations

import ast
import bisect
import functools
import io
import os
import re
import sys
import tokenize
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import aiofiles
import anyio

__all__ = [
    "KINDS",
    "MATCH_CAP",
    "SKIP_DIRS",
    "TOP_LEVEL",
    "Corpus",
    "Json",
    "Term",
    "Unit",
    "aggregate",
    "count",
    "extract_terms",
    "list_packages",
    "read_files",
    "read_region",
    "search",
]

#: Directory names never searched (at any depth).
SKIP_DIRS = frozenset({"test", "tests", "idlelib", "site-packages", "__pycache__"})
#: Unit name of the ``.py`` files directly under the corpus root.
TOP_LEVEL = "(top-level)"
#: Match kinds, strongest first.
KINDS = ("definition", "import", "export", "call", "reference", "string", "comment")
MATCH_CAP = 20  # matches listed per search result
PER_KIND = 2  # of which at least this many of each kind found (if there are that many)
TEXT_CAP = 160  # characters of a matching line kept in a result
REGION_CONTEXT = 3  # lines read on each side of a match
MAX_KEYWORDS = 4  # keyword terms taken from a question without identifiers
MIN_STEM = 4  # a keyword is never stemmed below this many characters

Json = dict[str, Any]


# --------------------------------------------------------------------------- terms

# English stopwords, and words that every question about code has.
_STOPWORD_TEXT = """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each either else ever
every few for from further get gets got had has have having he her here hers him his how i if in
into is it its itself just let lets like many may me might more most much must my need needs no
nor not now of off on once one only or other our out over own please same shall she should show
so some such tell than that the their them then there these they this those through to too under
until up upon us very via was we were what whats when where which while who whom whose why will
with within without would you your hello hi hey thanks thank
python pythons standard library libraries stdlib cpython module modules package packages source
code file files find list use used uses using usage usages call called calls function functions
method methods work works working handle handled handles handling implement implemented
implements implementation happen happens thing things way ways
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_QUOTED = re.compile(r"""(?:(?<=[\s(\[])|^)(["'`])(.+?)\1(?=[\s?.,!;:)\]]|$)""")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class Term(NamedTuple):
    """One thing to search for.

    :ivar text: what the question said (``TaskGroup``, ``timeouts``).
    :ivar kind: ``identifier`` (case-sensitive, whole name), ``quoted`` (a literal phrase,
        case-insensitive) or ``keyword`` (case-insensitive word prefix of the stem).
    :ivar needle: what is searched: the identifier, the phrase or the keyword's stem.
    """

    text: str
    kind: str
    needle: str

    @property
    def pattern(self) -> re.Pattern[str]:
        """The compiled regular expression for this term."""
        return _compile(self.kind, self.needle)

    def describe(self) -> str:
        """``TaskGroup`` (identifier, case-sensitive, whole name) and the like."""
        if self.kind == "identifier":
            return f"`{self.needle}` (identifier, case-sensitive, whole name)"
        if self.kind == "quoted":
            return f'"{self.needle}" (quoted phrase, case-insensitive)'
        return f"`{self.needle}*` (keyword from {self.text!r}, case-insensitive word prefix)"


@functools.lru_cache(maxsize=256)
def _compile(kind: str, needle: str) -> re.Pattern[str]:
    escaped = re.escape(needle)
    if kind == "identifier":
        return re.compile(rf"(?<!\w){escaped}(?!\w)")
    if kind == "keyword":
        return re.compile(rf"(?<![A-Za-z0-9]){escaped}", re.IGNORECASE)
    return re.compile(escaped, re.IGNORECASE)


def _is_code_name(word: str, had_parens: bool) -> bool:
    if "." in word:
        return all(len(part) >= 2 for part in word.split("."))
    return had_parens or "_" in word or re.search(r"[a-z][A-Z]", word) is not None


def _stem(word: str) -> str:
    """Strip one plural or verb suffix, never below :data:`MIN_STEM` characters."""
    if word.endswith("ies"):
        stem = word[:-3]
    elif word.endswith(("ing", "ed")):
        stem = word[: -3 if word.endswith("ing") else -2]
    elif word.endswith(("sses", "xes", "zes", "ches", "shes")):
        stem = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        stem = word[:-1]
    else:
        return word
    return stem if len(stem) >= MIN_STEM else word


def _starts_sentence(text: str, match: re.Match[str]) -> bool:
    before = text[: match.start()].rstrip()
    return not before or before.endswith((".", "?", "!", ":"))


def extract_terms(question: str, exclude: Iterable[str] = ()) -> list[Term]:
    """The search terms of a question, in the order they appear.

    Quoted text (``"..."``, ``'...'``, backticks) is taken as it is; code names (dotted names,
    snake_case, dunders, camelCase/CapWords with an inner capital, ``name()``) are identifiers.
    Only when neither is present, up to 4 keywords are taken: the words minus English stopwords
    (and minus the words in ``exclude``), lightly stemmed (``timeouts`` -> ``timeout``); a
    Capitalized word inside a sentence stays an identifier ("Where is Counter used?").

    :param question: the user's question.
    :param exclude: lower-case words never to use as keywords (e.g. package names of the scope).
    :returns: the terms, without duplicates; empty when the question has nothing to search.
    """
    terms: list[Term] = []
    seen: set[tuple[str, str]] = set()

    def add(term: Term) -> None:
        if (term.kind, term.needle) not in seen:
            seen.add((term.kind, term.needle))
            terms.append(term)

    rest = question
    for match in _QUOTED.finditer(question):
        text = match.group(2).strip()
        if not text:
            continue
        stripped = text.removesuffix("()")
        kind = "identifier" if _IDENTIFIER.fullmatch(stripped) else "quoted"
        add(Term(text, kind, stripped if kind == "identifier" else text))
        rest = rest.replace(match.group(0), " ")
    words = [
        (m.group(0).removesuffix("()"), m.group(0).endswith("()"), _starts_sentence(rest, m))
        for m in _WORD.finditer(rest)
    ]
    for word, had_parens, _ in words:
        if _is_code_name(word, had_parens):
            add(Term(word, "identifier", word))
    if terms:
        return terms
    excluded = {w.lower() for w in exclude}
    for word, _, initial in words:
        lower = word.lower()
        if len(lower) < 3 or lower in _STOPWORDS or lower in excluded or "." in word:
            continue
        if word[0].isupper() and word[1:].islower() and not initial:
            add(Term(word, "identifier", word))  # "Where is Counter used?"
        else:
            add(Term(word, "keyword", _stem(lower)))
        if len(terms) == MAX_KEYWORDS:
            break
    return terms


# --------------------------------------------------------------------------- corpus


class Unit(NamedTuple):
    """A slice of the corpus searched by one tool call: a package directory, one module, or the
    modules directly under the root (:data:`TOP_LEVEL`)."""

    name: str
    files: tuple[str, ...]


class Corpus:
    """The ``*.py`` files under a root directory, read lazily (blocking: call from a thread).

    Paths are relative to the root, with ``/`` separators.

    :param root: the corpus directory.
    :param skip: directory names skipped at any depth (dot-directories are always skipped).
    """

    def __init__(self, root: Path, skip: frozenset[str] = SKIP_DIRS) -> None:
        self.root = root
        self.skip = skip
        self.unreadable: list[str] = []
        self._files: list[str] | None = None
        self._texts: dict[str, str] = {}

    def files(self) -> list[str]:
        """Every ``*.py`` file outside skipped directories, sorted."""
        if self._files is None:
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = sorted(
                    d for d in dirnames if d not in self.skip and not d.startswith(".")
                )
                rel_dir = Path(dirpath).relative_to(self.root).as_posix()
                prefix = "" if rel_dir == "." else rel_dir + "/"
                found.extend(prefix + f for f in filenames if f.endswith(".py"))
            self._files = sorted(found)
        return self._files

    def packages(self) -> list[str]:
        """Top-level directories that hold at least one searched file, sorted."""
        return sorted({f.split("/", 1)[0] for f in self.files() if "/" in f})

    def units(self, scope: Iterable[str] = ()) -> list[Unit]:
        """How the corpus (or the ``scope`` packages) is split into search calls.

        Unscoped: one unit per top-level package plus :data:`TOP_LEVEL` for the loose modules.
        Scoped to packages: one unit per sub-package and one per module directly inside.
        """
        scope = list(scope)
        groups: dict[str, list[str]] = {}
        for path in self.files():
            parts = path.split("/")
            if scope:
                if parts[0] not in scope:
                    continue
                name = "/".join(parts[:2])
            else:
                name = parts[0] if len(parts) > 1 else TOP_LEVEL
            groups.setdefault(name, []).append(path)
        return [Unit(name, tuple(files)) for name, files in sorted(groups.items())]

    def unit(self, name: str, scope: Iterable[str] = ()) -> Unit:
        """The unit called ``name``.

        :raises LookupError: if no unit has that name.
        """
        for unit in self.units(scope):
            if unit.name == name:
                return unit
        raise LookupError(f"no package or module {name!r} in corpus {self.root}")

    def text(self, path: str) -> str:
        """The text of one file (UTF-8, undecodable bytes replaced; ``""`` if unreadable)."""
        if path not in self._texts:
            try:
                with open(self.root / path, encoding="utf-8", errors="replace") as f:
                    self._texts[path] = f.read()
            except OSError:
                self.unreadable.append(path)
                self._texts[path] = ""
        return self._texts[path]


async def read_files(corpus: Corpus, paths: Iterable[str], *, limit: int = 16) -> None:
    """Read the corpus-relative ``paths`` that are not read yet through aiofiles, at most
    ``limit`` at once; afterwards :meth:`Corpus.text` answers from memory. An unreadable file
    reads as ``""`` and is listed in ``corpus.unreadable``, as with :meth:`Corpus.text`."""
    todo = [p for p in dict.fromkeys(paths) if p not in corpus._texts]
    gate = anyio.Semaphore(limit)

    async def one(path: str) -> None:
        async with gate:
            try:
                async with aiofiles.open(
                    corpus.root / path, encoding="utf-8", errors="replace"
                ) as f:
                    text = await f.read()
            except OSError:
                corpus.unreadable.append(path)
                text = ""
            corpus._texts[path] = text

    async with anyio.create_task_group() as tg:
        for path in todo:
            tg.start_soon(one, path)


# --------------------------------------------------------------------------- tools


def list_packages(corpus: Corpus, scope: Iterable[str] = ()) -> Json:
    """Tool: the units the corpus is searched in, with file counts and sizes (bytes).

    Blocking (stats files): call from a thread.
    """
    units = corpus.units(scope)
    rows = []
    total_bytes = 0
    for unit in units:
        size = sum((corpus.root / f).stat().st_size for f in unit.files)
        total_bytes += size
        rows.append({"name": unit.name, "files": len(unit.files), "bytes": size})
    return {
        "corpus": str(corpus.root),
        "scope": list(scope),
        "skipped_dirs": sorted(corpus.skip),
        "units": rows,
        "files": sum(r["files"] for r in rows),
        "bytes": total_bytes,
    }


_Hit = tuple[int, str, int, str, str]  # rank of the kind, path, line, kind, text
_Span = tuple[tuple[int, int], tuple[int, int], str]
_LINE_BREAKS = (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT)


class _Layout(NamedTuple):
    """What :mod:`tokenize` tells about a file: the (start, end, kind) of every string and
    comment token in source order (kind ``string``, ``comment``, or ``export`` for a string of
    a statement that starts with ``__all__``); the lines that continue a statement begun on an
    earlier line; the lines of ``import`` / ``from`` statements."""

    spans: list[_Span]
    continued: set[int]
    imports: set[int]


def _layout(text: str) -> _Layout:
    """Tokenize ``text``; a file that does not tokenize keeps what was found before the error."""
    layout = _Layout([], set(), set())
    string_types = {tokenize.STRING}
    fstring_middle = getattr(tokenize, "FSTRING_MIDDLE", None)  # Python >= 3.12
    if fstring_middle is not None:
        string_types.add(fstring_middle)
    in_statement = in_all = in_import = False
    row = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                layout.spans.append((tok.start, tok.end, "comment"))
            if tok.type == tokenize.NEWLINE:
                in_statement = in_all = in_import = False
            if tok.type in _LINE_BREAKS or tok.type == tokenize.ENDMARKER:
                continue
            if tok.start[0] != row:
                row = tok.start[0]
                if in_statement:
                    layout.continued.add(row)
            if not in_statement:
                in_statement = True
                in_all = tok.type == tokenize.NAME and tok.string == "__all__"
                in_import = tok.type == tokenize.NAME and tok.string in ("import", "from")
            if in_import:
                layout.imports.update(range(tok.start[0], tok.end[0] + 1))
            if tok.type in string_types:
                layout.spans.append((tok.start, tok.end, "export" if in_all else "string"))
    except (tokenize.TokenError, SyntaxError):
        pass
    return layout


_DEF = re.compile(r"(?:async\s+)?(?:def|class)\s+(\w+)")
_ASSIGN = re.compile(r"\w*\s*(?::[^=]*)?=(?!=)")
_CALL = re.compile(r"\w*\s*\(")


def _kind(line: str, lineno: int, match: re.Match[str], term: Term, layout: _Layout) -> str:
    """The kind (:data:`KINDS`) of a match on line ``lineno`` of a file laid out as ``layout``."""
    position = (lineno, match.start())
    index = bisect.bisect_right(layout.spans, (position, (sys.maxsize, 0), "~")) - 1
    if index >= 0:
        start, end, kind = layout.spans[index]
        if start <= position < end:
            return kind
    stripped = line.lstrip()
    if stripped.startswith("#"):  # only when the file did not tokenize
        return "comment"
    definition = _DEF.match(stripped)
    if definition and term.pattern.search(definition.group(1)):
        return "definition"
    tail = line[match.end() :]
    at_start = match.start() == len(line) - len(stripped) and lineno not in layout.continued
    if at_start and _ASSIGN.match(tail):
        return "definition"
    if lineno in layout.imports:
        return "import"
    if _CALL.match(tail):
        return "call"
    return "reference"


def _select(hits: list[_Hit]) -> list[_Hit]:
    """At most :data:`MATCH_CAP` of the sorted ``hits``: the first :data:`PER_KIND` of each
    kind, then the strongest of the rest; sorted."""
    taken: set[int] = set()
    per_kind: Counter[str] = Counter()
    for i, hit in enumerate(hits):
        if per_kind[hit[3]] < PER_KIND:
            per_kind[hit[3]] += 1
            taken.add(i)
    for i in range(len(hits)):
        if len(taken) >= MATCH_CAP:
            break
        taken.add(i)
    return [hits[i] for i in sorted(taken)][:MATCH_CAP]


def search(corpus: Corpus, term: Term, unit: Unit) -> Json:
    """Tool: every line of ``unit`` that matches ``term``, classified.

    Each matching line gets a kind (:data:`KINDS`): a ``def``/``class``/assignment of the name,
    an import, a string in ``__all__`` (export), a call, another reference in code, text inside
    a string or docstring, or a comment (strings and comments come from :mod:`tokenize`). The
    result lists at most :data:`MATCH_CAP` matches (the strongest by kind, then path and line,
    with at least :data:`PER_KIND` of every kind found) and tallies all of them. Blocking
    (reads files): call from a thread.
    """
    pattern = term.pattern
    by_kind: Counter[str] = Counter()
    by_file: dict[str, list[int]] = {}  # path -> [matching lines, first line]
    hits: list[_Hit] = []
    lines_scanned = 0
    for path in unit.files:
        text = corpus.text(path)
        lines = text.split("\n")
        lines_scanned += len(lines)
        if pattern.search(text) is None:
            continue
        layout = _layout(text)
        for lineno, line in enumerate(lines, 1):
            match = pattern.search(line)
            if match is None:
                continue
            kind = _kind(line, lineno, match, term, layout)
            by_kind[kind] += 1
            entry = by_file.setdefault(path, [0, lineno])
            entry[0] += 1
            hits.append((KINDS.index(kind), path, lineno, kind, line.strip()[:TEXT_CAP]))
    hits.sort()
    return {
        "term": term.needle,
        "package": unit.name,
        "files_scanned": len(unit.files),
        "lines_scanned": lines_scanned,
        "matching_lines": len(hits),
        "files_with_matches": len(by_file),
        "by_kind": {k: by_kind[k] for k in KINDS if by_kind[k]},
        "by_file": {
            path: {"lines": n, "first_line": first} for path, (n, first) in by_file.items()
        },
        "matches": [
            {"path": path, "line": lineno, "kind": kind, "text": text}
            for _, path, lineno, kind, text in _select(hits)
        ],
        "truncated": len(hits) > MATCH_CAP,
    }


def _scopes(tree: ast.AST, line: int) -> list[Json]:
    chain: list[Json] = []
    node: ast.AST = tree
    while True:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                if first <= line <= (child.end_lineno or child.lineno):
                    keyword = {"ClassDef": "class", "AsyncFunctionDef": "async def"}.get(
                        type(child).__name__, "def"
                    )
                    chain.append({"kind": keyword, "name": child.name, "line": child.lineno})
                    node = child
                    break
        else:
            return chain


def read_region(corpus: Corpus, path: str, line: int, context: int = REGION_CONTEXT) -> Json:
    """Tool: the lines around ``path:line`` and the ``class``/``def`` chain enclosing it.

    Blocking (reads and parses the file): call from a thread.

    :param path: a corpus-relative path.
    :param line: 1-based line number.
    :param context: lines on each side.
    :raises LookupError: if ``path`` is not a searched file of the corpus.
    :raises ValueError: if ``line`` is not a line of the file.
    """
    if path not in corpus.files():
        raise LookupError(f"{path!r} is not a searched file of corpus {corpus.root}")
    lines = corpus.text(path).split("\n")
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is outside {path} (1..{len(lines)})")
    start, end = max(1, line - context), min(len(lines), line + context)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scope = _scopes(ast.parse(corpus.text(path)), line)
    except (SyntaxError, ValueError):
        scope = []
    return {
        "path": path,
        "line": line,
        "start": start,
        "end": end,
        "scope": scope,
        "lines": [[n, lines[n - 1].rstrip()[:TEXT_CAP]] for n in range(start, end + 1)],
    }


def _strongest(matches: list[Json]) -> str | None:
    best = min(matches, key=lambda m: (KINDS.index(m["kind"]), m["path"], m["line"]), default=None)
    return None if best is None else f"{best['path']}:{best['line']}"


def count(term: Term, results: list[Json]) -> Json:
    """Tool: the tallies of one term over its search results (one per package)."""
    rows = []
    by_kind: Counter[str] = Counter()
    for result in results:
        by_kind.update(result["by_kind"])
        if result["matching_lines"]:
            rows.append(
                {
                    "package": result["package"],
                    "lines": result["matching_lines"],
                    "files": result["files_with_matches"],
                    "strongest": _strongest(result["matches"]),
                }
            )
    rows.sort(key=lambda r: (-r["lines"], r["package"]))
    return {
        "term": term.needle,
        "matching_lines": sum(r["lines"] for r in rows),
        "files": sum(r["files"] for r in rows),
        "packages": len(rows),
        "by_kind": {k: by_kind[k] for k in KINDS if by_kind[k]},
        "by_package": rows,
    }


def aggregate(results: list[Json], top: int = 10) -> Json:
    """Tool: per-package tallies over every term's search results, and the files with the
    most matching lines.

    :param results: search results (any terms, any packages).
    :param top: how many files to list.
    """
    packages: dict[str, Json] = {}
    files: dict[str, Json] = {}
    for result in results:
        if not result["matching_lines"]:
            continue
        row = packages.setdefault(
            result["package"], {"package": result["package"], "lines": 0, "matches": []}
        )
        row["lines"] += result["matching_lines"]
        row["matches"] += result["matches"]
        for kind, n in result["by_kind"].items():
            row[kind] = row.get(kind, 0) + n
        for path, tally in result["by_file"].items():
            entry = files.setdefault(path, {"path": path, "lines": 0, "first_line": 10**9})
            entry["lines"] += tally["lines"]
            entry["first_line"] = min(entry["first_line"], tally["first_line"])
    rows = []
    for row in packages.values():
        matches = row.pop("matches")
        prefix = row["package"] + ("/" if not row["package"].endswith(".py") else "")
        if row["package"] == TOP_LEVEL:
            row["files"] = sum(1 for p in files if "/" not in p)
        else:
            row["files"] = sum(1 for p in files if p == row["package"] or p.startswith(prefix))
        row["strongest"] = _strongest(matches)
        rows.append(row)
    rows.sort(key=lambda r: (-r["lines"], r["package"]))
    ranked = sorted(files.values(), key=lambda f: (-f["lines"], f["path"]))
    return {
        "matching_lines": sum(r["lines"] for r in rows),
        "files": len(files),
        "packages": len(rows),
        "by_package": rows,
        "top_files": ranked[:top],
    }
