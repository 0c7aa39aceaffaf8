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

  function shortJson(value, limit = 400) {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return text.length > limit ? `${text.slice(0, limit)}…` : text;
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
    for (const li of $('sessions').children) {
      li.classList.toggle('active', li.dataset.sessionId === state.sessionId);
    }
  }

  // -- rendering stored messages -------------------------------------------------------------

  function renderMessage(m, toolNodes) {
    const t = $('transcript');
    if (m.role === 'tool') {
      const node = toolNodes.get(m.tool_call_id);
      const text = `${m.name || 'tool'} → ${shortJson(m.content)}`;
      if (node) {
        node.textContent = text;
        node.dataset.state = m._error ? 'error' : 'ok';
      } else {
        const orphan = el('div', 'tool', text);
        orphan.dataset.state = m._error ? 'error' : 'ok';
        t.append(orphan);
      }
      return;
    }
    const bubble = el('div', `bubble ${m.role === 'user' ? 'user' : 'assistant'}`);
    if (m._error) bubble.classList.add('error');
    if (m.content) bubble.append(el('span', 'text', m.content));
    const markers = [];
    if (m._partial) markers.push('partial');
    if (m._recovered) markers.push('recovered');
    if (m.type === 'interrupted') markers.push('interrupted');
    if (m._cancelled) markers.push('cancelled');
    if (markers.length) bubble.append(el('span', 'marker', `(${markers.join(', ')})`));
    for (const call of m.tool_calls || []) {
      const fn = call.function || {};
      const node = el('div', 'tool', `${fn.name}(${fn.arguments || ''})`);
      node.dataset.state = 'running';
      toolNodes.set(call.id, node);
      bubble.append(node);
    }
    t.append(bubble);
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
    const toolNodes = new Map();
    for (const m of session.messages) {
      if (cut && m.timestamp && m.timestamp >= cut) continue;
      renderMessage(m, toolNodes);
    }
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
    $('title').textContent = session.title;
    $('session-id').textContent = session.session_id;
    return session;
  }

  // -- a live turn -----------------------------------------------------------------------------

  class LiveTurn {
    constructor(streamId) {
      this.streamId = streamId;
      this.lastSeq = 0;
      this.reconnects = 0; // times the EventSource came back after losing the connection
      this.dropped = false;
      this.root = el('div', 'turn');
      this.root.dataset.streamId = streamId;
      this.root.dataset.state = 'connecting';
      this.assistant = el('div', 'bubble assistant');
      this.statusLine = el('div', 'turn-status', 'waiting for events…');
      this.segment = null; // the <span class="text"> tokens go into
      this.reasoning = null;
      this.tools = new Map();
      this.root.append(this.assistant, this.statusLine);
      $('transcript').append(this.root);
    }

    setState(s, text) {
      this.root.dataset.state = s;
      const plural = this.reconnects === 1 ? '' : 's';
      const resumed = this.reconnects ? ` (resumed after ${this.reconnects} reconnect${plural})` : '';
      this.statusLine.textContent = text + resumed;
      this.statusLine.classList.toggle('error', s === 'error' || s === 'interrupted');
    }

    text(chunk) {
      if (!this.segment) {
        this.segment = el('span', 'text');
        this.assistant.append(this.segment);
      }
      this.segment.append(document.createTextNode(chunk));
    }

    handle(type, ev) {
      const d = ev.data || {};
      switch (type) {
        case 'stream.started': {
          const user = el('div', 'bubble user', d.user_message);
          this.root.insertBefore(user, this.assistant);
          this.setState('streaming', 'streaming…');
          break;
        }
        case 'token': this.text(d.text); break;
        case 'reasoning':
          if (!this.reasoning) {
            this.reasoning = el('div', 'reasoning');
            this.assistant.prepend(this.reasoning);
          }
          this.reasoning.append(document.createTextNode(d.text));
          break;
        case 'tool.started': {
          this.segment = null;
          const node = el('div', 'tool', `${d.name}(${shortJson(d.arguments || {})})`);
          node.dataset.state = 'running';
          node.dataset.callId = d.call_id;
          this.tools.set(d.call_id, node);
          this.assistant.append(node);
          break;
        }
        case 'tool.completed': {
          const node = this.tools.get(d.call_id);
          if (!node) break;
          const outcome = d.error ? `error: ${d.error}` : shortJson(d.result);
          const secs = typeof d.duration_s === 'number' ? ` (${d.duration_s.toFixed(2)} s)` : '';
          node.textContent = `${d.name} → ${outcome}${secs}`;
          node.dataset.state = d.error ? 'error' : 'ok';
          break;
        }
        case 'message': {
          const m = d.message || {};
          const streamed = this.segment && m.role === 'assistant'
            && m.content === this.segment.textContent;
          if (streamed) this.segment = null; // the streamed text is now a finished message
          else if (m.role !== 'tool' && m.content) {
            this.segment = null;
            this.assistant.append(el('div', 'bubble', m.content));
          }
          break;
        }
        case 'checkpoint': this.setState('streaming', `saved (${d.messages} messages)`); break;
        case 'title':
          $('title').textContent = d.title;
          break;
        case 'usage': this.usage = d; break;
        case 'error':
          if (d.type === 'interrupted') {
            this.setState('interrupted', 'Interrupted: the server stopped before this turn ended.');
          } else {
            this.setState('error', `Error: ${d.message || d.type}`);
          }
          break;
        case 'cancelled': this.setState('cancelled', 'Cancelled.'); break;
        case 'done': this.setState('done', 'Done.'); break;
        case 'stream.end':
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

  $('composer').addEventListener('submit', send);
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
