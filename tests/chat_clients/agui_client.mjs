// Drives POST /api/agui with AG-UI's own client, as CopilotKit does: @ag-ui/client's
// HttpAgent (which verifies the event order and applies the events to its messages).
//
//   node agui_client.mjs BASE_URL THREAD_ID TEXT [TEXT...]
//
// Runs one turn per TEXT on the thread and prints one JSON object on stdout;
// tests/chat_clients/test_agui_client.py checks it.
import { HttpAgent } from "@ag-ui/client";

const [base, threadId, ...texts] = process.argv.slice(2);

const agent = new HttpAgent({ url: `${base}/api/agui`, threadId });
const runs = [];
for (const [i, text] of texts.entries()) {
  agent.messages.push({ id: `user-${i}`, role: "user", content: text });
  const events = [];
  const errors = [];
  try {
    const result = await agent.runAgent(
      { runId: `run-${i}`, forwardedProps: { model: "small" } },
      {
        onEvent: ({ event }) => { events.push(event.type); },
        onRunErrorEvent: ({ event }) => { errors.push(event.message); },
      },
    );
    runs.push({ events, errors, newMessages: result.newMessages });
  } catch (err) {
    runs.push({ events, errors, thrown: String(err && err.message) });
  }
}
process.stdout.write(JSON.stringify({ runs, messages: agent.messages }) + "\n");
