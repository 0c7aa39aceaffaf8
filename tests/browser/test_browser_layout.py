"""The demo page in a real headless Chromium (playwright-core from npm driving the Debian
``chromium``): a turn watched live and the same session reopened from storage look the
same; the assistant's Markdown is rendered and sanitized (marked + DOMPurify, vendored);
messages show their times; tool steps are collapsible and keep their arguments; rename
and delete work from the page. Screenshots land in ``tests/browser/artifacts/``.

Skips or fails exactly like ``test_browser_demo.py`` when the browser stack is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from sse_helpers import ServerProcess, free_port  # noqa: E402
from test_browser_demo import ARTIFACTS, _require_browser_stack  # noqa: E402

AGENT = f"{HERE.parent / 'chat_clients' / 'chat_agents.py'}:agent"


def test_live_and_reopened_look_the_same_markdown_is_safe_rename_and_delete(
    tmp_path: Path,
) -> None:
    node = _require_browser_stack()
    server = ServerProcess(tmp_path / "store", free_port(), tmp_path / "server.log", agent=AGENT)
    server.start()
    try:
        done = subprocess.run(
            [node, str(HERE / "demo_layout.js"), server.base_url + "/", str(ARTIFACTS)],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"{done.stderr}\n{server.output()}"
        result = json.loads(done.stdout.strip().splitlines()[-1])["result"]
        gone = httpx.get(f"{server.base_url}/api/sessions/{result['sessionId']}")
    finally:
        server.kill()

    live, reopened = result["live"], result["reopened"]
    # The same layout, part for part, except reasoning: it streams live but is not
    # stored as a message (by design), so a reopened turn has none.
    (turn,) = live
    assert turn["parts"][0] == {"kind": "reasoning"}
    assert reopened == [{**turn, "parts": turn["parts"][1:]}]
    assert turn["state"] == "done"
    assert turn["user"] == "reason=1 tokens=4 tool_every=2 md=1"
    assert turn["userTime"] is True
    kinds = [p["kind"] for p in turn["parts"]]
    assert kinds == ["reasoning", "text", "tool", "text", "tool", "text", "time"]
    tools = [p for p in turn["parts"] if p["kind"] == "tool"]
    assert [t["args"] for t in tools] == [{"i": 2}, {"i": 4}]  # arguments kept
    assert [json.loads(t["result"]) for t in tools] == [
        {"i": 2, "square": 4},
        {"i": 4, "square": 16},
    ]
    assert [t["summary"] for t in tools] == ["count → i=2, square=4", "count → i=4, square=16"]
    assert all(t["state"] == "ok" for t in tools)
    assert turn["parts"][-1] == {"kind": "time", "shown": True}
    assert result["expanded"] is True

    safe = result["sanitizer"]
    assert safe["h1"] == "Findings"
    assert safe["strong"] == "Bold claim"
    assert safe["code"] == "inline code"
    assert safe["listItems"] == 2
    assert safe["tableCells"] == 2
    assert (safe["scripts"], safe["onerror"], safe["xss"]) == (0, 0, None)

    assert result["renamedInList"] is True
    assert result["deletedStatus"] == "Deleted."
    assert gone.status_code == 404
    for shot in ("liveShot", "reopenedShot", "afterDeleteShot"):
        assert Path(result[shot]).stat().st_size > 0
