// Drives the runtime's AI SDK endpoints with the real `ai` package, as `useChat` does:
// AbstractChat (the class behind React's/Vue's/Svelte's useChat) over DefaultChatTransport.
//
//   node chat_client.mjs SCENARIO BASE_URL CHAT_ID TEXT
//
// Prints one JSON object on stdout; tests/chat_clients/test_ai_sdk.py checks it.
import {
  AbstractChat,
  DefaultChatTransport,
  readUIMessageStream,
  validateUIMessages,
} from "ai";

const [scenario, base, chatId, text] = process.argv.slice(2);

// The state a UI framework would keep (React keeps it in a store); plain fields here.
class State {
  constructor(messages = []) {
    this.status = "ready";
    this.error = undefined;
    this.messages = messages;
  }
  pushMessage(m) { this.messages = [...this.messages, m]; }
  popMessage() { this.messages = this.messages.slice(0, -1); }
  replaceMessage(i, m) { this.messages = this.messages.map((x, j) => (j === i ? m : x)); }
  snapshot(thing) { return structuredClone(thing); }
}

class Chat extends AbstractChat {
  constructor(options) {
    const state = new State(options.messages);
    super({ ...options, state });
    this.stateRef = state;
  }
}

function newChat(messages) {
  const finishes = [];
  const errors = [];
  const chat = new Chat({
    id: chatId,
    messages,
    transport: new DefaultChatTransport({ api: `${base}/api/chat` }),
    onFinish: (o) => finishes.push({ isAbort: o.isAbort, isError: o.isError, finishReason: o.finishReason }),
    onError: (e) => errors.push(String(e && e.message)),
  });
  return { chat, finishes, errors };
}

function deltas(chunks) {
  return chunks.filter((c) => c.type === "text-delta").length;
}

async function send() {
  const { chat, finishes, errors } = newChat([]);
  await chat.sendMessage({ text, metadata: { from: "node" } });
  return { status: chat.status, messages: chat.messages, finishes, errors };
}

// Start a turn, read until a few text deltas arrived, drop the connection (abort the
// fetch), then do what useChat({resume: true}) does on mount: GET /api/chat/{id}/stream.
async function resume() {
  const transport = new DefaultChatTransport({ api: `${base}/api/chat` });
  const abort = new AbortController();
  const user = { id: "u1", role: "user", parts: [{ type: "text", text }] };
  const stream = await transport.sendMessages({
    chatId, messages: [user], trigger: "submit-message", messageId: undefined,
    abortSignal: abort.signal,
  });
  const before = [];
  const reader = stream.getReader();
  while (deltas(before) < 5) {
    const { value, done } = await reader.read();
    if (done) break;
    before.push(value);
  }
  abort.abort();
  await reader.cancel().catch(() => {});
  const { chat, finishes, errors } = newChat([user]);
  await chat.resumeStream();
  // A second resume after the turn ended: the server answers 204, the chat stays ready.
  const after = newChat(chat.messages);
  await after.chat.resumeStream();
  return {
    before, status: chat.status, messages: chat.messages, finishes, errors,
    second: { status: after.chat.status, messages: after.chat.messages.length },
  };
}

// Read the POST's chunks with readUIMessageStream while another request stops the turn.
async function stop() {
  const transport = new DefaultChatTransport({ api: `${base}/api/chat` });
  const user = { id: "u1", role: "user", parts: [{ type: "text", text }] };
  const stream = await transport.sendMessages({
    chatId, messages: [user], trigger: "submit-message", messageId: undefined,
  });
  const [chunksCopy, forMessages] = stream.tee();
  const chunks = [];
  let stopped = null;
  const reading = (async () => {
    const reader = chunksCopy.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      if (deltas(chunks) === 3 && stopped === null) {
        stopped = fetch(`${base}/api/chat/${chatId}/stop`, { method: "POST" }).then((r) => r.json());
      }
    }
  })();
  let last;
  for await (const message of readUIMessageStream({ stream: forMessages })) last = message;
  await reading;
  return { chunks, message: last, stop: await stopped };
}

// Reload: the stored transcript as UI messages, checked by the SDK's own validator.
async function reload() {
  const r = await fetch(`${base}/api/chat/${chatId}`);
  const body = await r.json();
  const messages = await validateUIMessages({ messages: body.messages });
  return { status: r.status, messages };
}

// The UI's own history edits: regenerate the last answer, then edit the first user
// message (sendMessage with its messageId); after each, the stored chat as a reload
// shows it (validated by the SDK).
async function rewrite() {
  const { chat, finishes, errors } = newChat([]);
  const texts = (m) => m.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  const view = (messages) => messages.map((m) => ({ role: m.role, text: texts(m) }));
  const stored = async () => {
    const r = await fetch(`${base}/api/chat/${chatId}`);
    return view(await validateUIMessages({ messages: (await r.json()).messages }));
  };
  await chat.sendMessage({ text: `${text} first` });
  await chat.sendMessage({ text: `${text} second` });
  const before = { client: view(chat.messages), stored: await stored() };
  await chat.regenerate();
  const regenerated = { client: view(chat.messages), stored: await stored() };
  await chat.sendMessage({ text: `${text} edited`, messageId: chat.messages[0].id });
  const edited = { client: view(chat.messages), stored: await stored() };
  return { before, regenerated, edited, finishes, errors, status: chat.status };
}

const scenarios = { send, resume, stop, reload, rewrite };
try {
  const out = await scenarios[scenario]();
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (err) {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}
