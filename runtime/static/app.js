// The runtime demo page: list sessions, open one, send a message, watch the turn live
// over Server-Sent Events, cancel it. Plain browser JavaScript, no build step.
//
// Resuming: EventSource reconnects by itself after a dropped connection or a server
// restart and sends the Last-Event-ID header; the server answers with exactly the
// events after it. The page renders events as they arrive and does NOT drop
// duplicates itself: it records any seq that is not "previous + 1" in
// window.runtimeDemo.anomalies and shows a warning, so a server bug stays visible.
'use strict';

(() => {
  const EVENT_TYPES = [
    'stream.started', 'token', 'reasoning', 'tool.started', 'tool.completed', 'message',
    'checkpoint', 'title', 'usage', 'error', 'cancelled', 'done', 'stream.end',
  ];
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const state = {
    token: params.get('token') || sessionStorage.getItem('runtime.token') || '',
    sessionId: null,
    cursor: null,
    follow: null, // {streamId, es, turn}
  };
  // Read by the browser test and handy in the devtools console.
  const demo = { events: [], anomalies: [], state };
  window.runtimeDemo = demo;

  // -- HTTP ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const res = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (res.status === 401) $('token-form').hidden = false;
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  const enc = encodeURIComponent;

  // -- small DOM helpers ----------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function setStatus(text) { $('status').textContent = text; }

  function setConn(state_, text) {
    const badge = $('conn');
    badge.dataset.state = state_;
    badge.textContent = text || state_;
  }

  function scrollDown() {
    const t = $('transcript');
    t.scrollTop = t.scrollHeight;
  }

  function when(ts) {
    return ts ? new Date(ts * 1000).toLocaleString() : '';
  }

  // -- sessions list ----------------------------------------------------------------------

  async function loadSessions(reset = true) {
    if (reset) state.cursor = null;
    const q = new URLSearchParams({ limit: '30' });
    if (state.cursor) q.set('cursor', state.cursor);
    let page;
    try {
      page = await api('GET', `api/sessions?${q}`);
    } catch (err) {
      setStatus(`Could not list sessions: ${err.message}`);
      return;
    }
    const list = $('sessions');
    if (reset) list.replaceChildren();
    for (const s of page.sessions) {
      const li = el('li', s.session_id === state.sessionId ? 'active' : '', s.title);
      li.dataset.sessionId = s.session_id;
      const streaming = s.active_stream_id ? ' · streaming' : '';
      li.append(el('span', 'meta', `${s.message_count} messages · ${when(s.updated_at)}${streaming}`));
      li.addEventListener('click', () => openSession(s.session_id));
      list.append(li);
    }
    state.cursor = page.next_cursor;
    $('more-sessions').hidden = !page.next_cursor;
  }

  function markActive() {
    showSessionActions();
    for (const li of $('sessions').children) {
      li.classList.toggle('active', li.dataset.sessionId === state.sessionId);
    }
  }

  // -- Markdown ---------------------------------------------------------------------------

  // marked (Markdown to HTML) and DOMPurify (drops anything that could run script) are
  // vendored in static/vendor/. Without them the text stays plain.
  function renderMarkdown(node, raw) {
    if (window.marked && window.DOMPurify) {
      node.innerHTML = window.DOMPurify.sanitize(window.marked.parse(raw, { gfm: true }));
    } else {
      node.textContent = raw;
    }
  }

  function clock(ts) {
    return ts ? new Date(ts * 1000).toLocaleTimeString() : '';
  }

  function pretty(value) {
    if (typeof value === 'string') {
      try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
    }
    return JSON.stringify(value, null, 2);
  }

  // -- a turn, the same whether it is live or reopened ---------------------------------------

  // One user message and the agent's answer: the user's bubble (with its time), the
  // assistant's bubble (reasoning, Markdown text parts, collapsible tool steps with their
  // arguments and result, its time) and a status line.
  class TurnView {
    constructor(streamId) {
      this.streamId = streamId || '';
      this.root = el('div', 'turn');
      this.root.dataset.streamId = this.streamId;
      this.root.dataset.state = 'connecting';
      this.userSlot = el('div', 'user-slot');
      this.assistant = el('div', 'bubble assistant');
      this.stamp = el('time', 'stamp');
      this.statusLine = el('div', 'turn-status', '');
      this.part = null; // {node, raw}: the Markdown part tokens go into
      this.reasoningNode = null;
      this.tools = new Map();
      this.reconnects = 0;
      this.root.append(this.userSlot, this.assistant, this.statusLine);
      $('transcript').append(this.root);
    }

    user(text, ts) {
      const bubble = el('div', 'bubble user');
      bubble.append(el('div', 'body', text));
      bubble.append(el('time', 'stamp', clock(ts)));
      this.userSlot.replaceChildren(bubble);
    }

    setState(s, text) {
      this.root.dataset.state = s;
      const plural = this.reconnects === 1 ? '' : 's';
      const resumed = this.reconnects ? ` (resumed after ${this.reconnects} reconnect${plural})` : '';
      this.statusLine.textContent = text + resumed;
      this.statusLine.classList.toggle('error', s === 'error' || s === 'interrupted');
    }

    at(ts) {
      this.stamp.textContent = clock(ts);
      this.assistant.append(this.stamp); // keeps the time last
    }

    text(chunk) {
      if (!this.part) {
        const node = el('div', 'text md');
        this.part = { node, raw: '', queued: false };
        this.assistant.append(node);
      }
      const part = this.part;
      part.raw += chunk;
      part.node.dataset.raw = part.raw;
      if (!part.queued) { // re-render at most once per frame while tokens stream
        part.queued = true;
        requestAnimationFrame(() => { part.queued = false; renderMarkdown(part.node, part.raw); });
      }
    }

    endText() {
      if (this.part) renderMarkdown(this.part.node, this.part.raw);
      this.part = null;
    }

    wholeText(content, marks) {
      this.endText();
      this.text(content);
      const node = this.part.node;
      this.endText();
      if (marks && marks.length) node.append(el('span', 'marker', `(${marks.join(', ')})`));
    }

    reasoning(chunk) {
      if (!this.reasoningNode) {
        this.reasoningNode = el('div', 'reasoning');
        this.assistant.prepend(this.reasoningNode);
      }
      this.reasoningNode.append(document.createTextNode(chunk));
    }

    toolStarted(callId, name, args) {
      this.endText();
      const node = el('details', 'tool');
      node.dataset.state = 'running';
      node.dataset.callId = callId;
      const summary = el('summary', '', `${name}`);
      const argsBlock = el('pre', 'args', pretty(args || {}));
      node.append(summary, el('div', 'label', 'arguments'), argsBlock);
      this.tools.set(callId, { node, summary, name });
      this.assistant.append(node);
    }

    toolCompleted(callId, name, outcome) {
      let tool = this.tools.get(callId);
      if (!tool) {
        this.toolStarted(callId, name, {});
        tool = this.tools.get(callId);
      }
      const { node, summary } = tool;
      const secs = typeof outcome.secs === 'number' ? ` · ${outcome.secs.toFixed(2)} s` : '';
      const line = outcome.error ? `error: ${outcome.error}` : outcome.summary || '';
      summary.textContent = `${tool.name}${line ? ` → ${line}` : ''}${secs}`;
      node.dataset.state = outcome.error ? 'error' : 'ok';
      node.append(el('div', 'label', outcome.error ? 'error' : 'result'));
      node.append(el('pre', 'result', outcome.error ? outcome.error : pretty(outcome.result)));
    }
  }

  // A one-line summary of a tool result, as the CLI prints it: short values whole, the
  // sizes of long ones, a few fields of an object.
  function resultSummary(result) {
    const short = (v) => v === null || typeof v === 'number' || typeof v === 'boolean'
      || (typeof v === 'string' && v.length <= 32 && !v.includes('\n'));
    const size = (v) => (Array.isArray(v) ? `${v.length} items`
      : typeof v === 'object' ? `${Object.keys(v).length} keys` : `${String(v).length} chars`);
    if (result === undefined) return '';
    if (short(result)) return String(result);
    if (Array.isArray(result) || typeof result !== 'object') return size(result);
    const fields = Object.entries(result);
    const shown = fields.slice(0, 4).map(([k, v]) => (short(v) ? `${k}=${v}` : `${k}: ${size(v)}`));
    return shown.join(', ') + (fields.length > 4 ? ` +${fields.length - 4} more` : '');
  }

  // Stored messages grouped into turns and drawn with TurnView: each user message opens a
  // turn; the assistant and tool messages after it fill its assistant bubble.
  function renderStored(messages) {
    let turn = null;
    const ensure = () => turn || (turn = new TurnView(''));
    for (const m of messages) {
      if (m.role === 'user') {
        turn = new TurnView(m.stream_id);
        turn.user(m.content, m.timestamp);
        turn.setState('done', 'Done.');
        continue;
      }
      const t = ensure();
      if (m.role === 'tool') {
        const error = m._error ? String(m.content).replace(/^error: /, '') : null;
        let result = m.content;
        try { result = JSON.parse(m.content); } catch { /* plain text */ }
        t.toolCompleted(m.tool_call_id, m.name || 'tool', {
          error, result, summary: resultSummary(result),
        });
        t.at(m.timestamp);
        continue;
      }
      const marks = [];
      if (m._partial) marks.push('partial');
      if (m._recovered) marks.push('recovered');
      if (m._cancelled) marks.push('cancelled');
      if (m.type === 'interrupted') {
        t.setState('interrupted', 'Interrupted: the server stopped before this turn ended.');
      } else if (m.type === 'cancelled' || m._cancelled) {
        t.setState('cancelled', 'Cancelled.');
      } else if (m._error) {
        t.setState('error', String(m.content));
      } else if (m.content) {
        t.wholeText(m.content, marks);
      }
      for (const call of m.tool_calls || []) {
        const fn = call.function || {};
        t.toolStarted(call.id, fn.name, fn.arguments);
      }
      t.at(m.timestamp);
    }
  }

  // -- opening a session ------------------------------------------------------------------------

  async function openSession(sessionId) {
    stopFollowing();
    state.sessionId = sessionId;
    markActive();
    $('transcript').replaceChildren();
    $('session-id').textContent = sessionId;
    let session;
    try {
      session = await api('GET', `api/sessions/${enc(sessionId)}`);
    } catch (err) {
      setStatus(`Could not open session: ${err.message}`);
      return;
    }
    $('title').textContent = session.title;
    const active = session.active_stream_id;
    // While a stream runs, the stored messages include what its checkpoints saved;
    // the stream replay renders that turn instead, so show only what came before it.
    const cut = active && session.pending_started_at;
    renderStored(session.messages.filter((m) => !(cut && m.timestamp && m.timestamp >= cut)));
    scrollDown();
    if (active) follow(active);
    else setStatus(`${session.message_count} messages`);
  }

  function newSession() {
    // Created on the server with the first message, titled after it.
    stopFollowing();
    state.sessionId = null;
    markActive();
    $('title').textContent = 'New session';
    $('session-id').textContent = '';
    $('transcript').replaceChildren();
    setStatus('The session is created with its first message.');
    $('message').focus();
  }

  function titleFrom(text) {
    const line = text.trim().split('\n')[0];
    return line.length > 60 ? `${line.slice(0, 59)}…` : line;
  }

  async function createSession(text) {
    const session = await api('POST', 'api/sessions', { title: titleFrom(text) });
    state.sessionId = session.session_id;
    showSessionActions();
    $('title').textContent = session.title;
    $('session-id').textContent = session.session_id;
    return session;
  }

  // -- a live turn -----------------------------------------------------------------------------

  class LiveTurn extends TurnView {
    constructor(streamId) {
      super(streamId);
      this.lastSeq = 0;
      this.dropped = false;
      this.statusLine.textContent = 'waiting for events…';
    }

    handle(type, ev) {
      const d = ev.data || {};
      switch (type) {
        case 'stream.started':
          this.user(d.user_message, d.pending_started_at || ev.ts);
          this.setState('streaming', 'streaming…');
          break;
        case 'token': this.text(d.text); break;
        case 'reasoning': this.reasoning(d.text); break;
        case 'tool.started': this.toolStarted(d.call_id, d.name, d.arguments); break;
        case 'tool.completed':
          this.toolCompleted(d.call_id, d.name, {
            error: d.error, result: d.result, secs: d.duration_s,
            summary: d.summary || resultSummary(d.result),
          });
          this.at(ev.ts);
          break;
        case 'message': {
          const m = d.message || {};
          if (this.part && m.role === 'assistant' && m.content === this.part.raw) this.endText();
          else if (m.role === 'assistant' && m.content) this.wholeText(m.content);
          this.at(ev.ts);
          break;
        }
        case 'checkpoint':
          if (!d.error) this.setState('streaming', `saved (${d.messages} messages)`);
          break;
        case 'title':
          $('title').textContent = d.title;
          break;
        case 'usage': this.usage = d; break;
        case 'error':
          this.endText();
          if (d.type === 'interrupted') {
            this.setState('interrupted', 'Interrupted: the server stopped before this turn ended.');
          } else {
            const kind = d.error_type ? `${d.error_type}: ` : '';
            this.setState('error', `Error: ${kind}${d.message || d.type}`);
          }
          break;
        case 'cancelled': this.endText(); this.setState('cancelled', 'Cancelled.'); break;
        case 'done': this.endText(); this.at(ev.ts); this.setState('done', 'Done.'); break;
        case 'stream.end':
          this.endText();
          if (this.root.dataset.state === 'streaming') this.setState('done', 'Ended.');
          this.root.dataset.ended = 'true';
          break;
        default: break;
      }
    }
  }

  function recordAnomaly(turn, seq) {
    const kind = seq <= turn.lastSeq ? 'duplicate' : 'gap';
    const text = `${kind}: got seq ${seq} after ${turn.lastSeq}`;
    demo.anomalies.push({ streamId: turn.streamId, kind, seq, after: turn.lastSeq });
    const box = $('anomalies');
    box.hidden = false;
    box.append(el('div', '', text));
  }

  function follow(streamId) {
    stopFollowing();
    const turn = new LiveTurn(streamId);
    const tokenQuery = state.token ? `?token=${enc(state.token)}` : '';
    const es = new EventSource(`api/streams/${enc(streamId)}/events${tokenQuery}`);
    state.follow = { streamId, es, turn };
    $('cancel').disabled = false;
    setConn('connecting');

    const onEvent = (type) => (e) => {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      demo.events.push({ streamId, seq: ev.seq, type, lastEventId: e.lastEventId });
      if (ev.seq !== turn.lastSeq + 1) recordAnomaly(turn, ev.seq);
      turn.lastSeq = Math.max(turn.lastSeq, ev.seq);
      turn.handle(type, ev);
      scrollDown();
      if (type === 'stream.end') {
        es.close();
        if (state.follow && state.follow.es === es) state.follow = null;
        $('cancel').disabled = true;
        setConn('idle', 'ended');
        loadSessions();
      }
    };
    for (const type of EVENT_TYPES) es.addEventListener(type, onEvent(type));
    es.onopen = () => {
      if (turn.dropped) turn.reconnects += 1;
      turn.dropped = false;
      turn.root.dataset.reconnects = String(turn.reconnects);
      setConn('live');
    };
    es.onerror = () => {
      turn.dropped = true;
      if (es.readyState === EventSource.CLOSED) {
        // Not 200 (e.g. 404, 401, or 204 = nothing more): EventSource gives up.
        setConn('closed', 'closed');
        $('cancel').disabled = true;
        if (turn.root.dataset.state === 'connecting' || turn.root.dataset.state === 'streaming') {
          turn.setState('closed', 'The event stream closed; reopen the session to refresh.');
        }
      } else {
        setConn('reconnecting', 'reconnecting…');
      }
    };
    return turn;
  }

  function stopFollowing() {
    if (state.follow) {
      state.follow.es.close(); // leaving never cancels the turn
      state.follow = null;
    }
    $('cancel').disabled = true;
    setConn('idle');
  }

  // -- actions ---------------------------------------------------------------------------------

  async function send(event) {
    event.preventDefault();
    const box = $('message');
    const text = box.value;
    if (!text.trim()) return;
    $('send').disabled = true;
    try {
      if (!state.sessionId) await createSession(text);
      const started = await api('POST', `api/sessions/${enc(state.sessionId)}/turns`, {
        message: text,
      });
      box.value = '';
      setStatus('');
      follow(started.stream_id);
    } catch (err) {
      if (err.status === 409 && err.body && err.body.active_stream_id) {
        setStatus('This session is busy with a running turn; following it.');
        follow(err.body.active_stream_id);
      } else {
        setStatus(`Could not send: ${err.message}`);
      }
    } finally {
      $('send').disabled = false;
    }
  }

  async function cancel() {
    if (!state.follow) return;
    $('cancel').disabled = true;
    try {
      await api('POST', `api/streams/${enc(state.follow.streamId)}/cancel`);
    } catch (err) {
      setStatus(`Could not cancel: ${err.message}`);
    }
  }

  async function rename() {
    if (!state.sessionId) return;
    const title = window.prompt('New title', $('title').textContent);
    if (title === null || !title.trim()) return;
    try {
      const s = await api('PATCH', `api/sessions/${enc(state.sessionId)}`, { title: title.trim() });
      $('title').textContent = s.title;
      setStatus('Renamed.');
      loadSessions();
    } catch (err) {
      setStatus(`Could not rename: ${err.message}`);
    }
  }

  async function remove() {
    if (!state.sessionId) return;
    if (!window.confirm(`Delete "${$('title').textContent}"? This cannot be undone.`)) return;
    try {
      await api('DELETE', `api/sessions/${enc(state.sessionId)}`);
      newSession();
      setStatus('Deleted.');
      loadSessions();
    } catch (err) {
      setStatus(`Could not delete: ${err.message}`);
    }
  }

  function showSessionActions() {
    $('rename').hidden = $('delete').hidden = !state.sessionId;
  }

  $('composer').addEventListener('submit', send);
  $('rename').addEventListener('click', rename);
  $('delete').addEventListener('click', remove);
  $('message').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('composer').requestSubmit();
  });
  $('cancel').addEventListener('click', cancel);
  $('new-session').addEventListener('click', newSession);
  $('more-sessions').addEventListener('click', () => loadSessions(false));
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.token = $('token').value.trim();
    sessionStorage.setItem('runtime.token', state.token);
    $('token-form').hidden = true;
    loadSessions();
  });

  if (state.token) sessionStorage.setItem('runtime.token', state.token);
  loadSessions();
  const initial = params.get('session');
  if (initial) openSession(initial);
})();
