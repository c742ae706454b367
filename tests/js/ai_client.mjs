// Drives lmstream's POST /api/chat with the real `ai` package (version pinned in package-lock.json).
//
//   node ai_client.mjs <base-url> transport "<question>"   one answer: DefaultChatTransport + readUIMessageStream
//   node ai_client.mjs <base-url> chat "<q1>" "<q2>"        AbstractChat: two turns, then regenerate
//   node ai_client.mjs <base-url> error "<question>"         AbstractChat: a failing answer, then one that works
//   node ai_client.mjs <base-url> resume <chat-id>            AbstractChat.resumeStream() (GET {api}/{id}/stream)
//   node ai_client.mjs <base-url> approve "<q>" '<decisions>'  AbstractChat: answer each tool approval request with
//                                                             addToolApprovalResponse ({"toolName": true|false});
//                                                             sendAutomaticallyWhen sends the answers
//
// Every response body is also teed (through the transport's `fetch` option, so it is the same
// run) into parseJsonEventStream with the package's own uiMessageChunkSchema: each chunk must
// validate. Prints one JSON object on stdout for the pytest side to compare with lmstream's events.
import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";

const [base, mode, ...questions] = process.argv.slice(2);
const api = `${base}/api/chat`;

const runs = []; // one entry per HTTP response: {status, headers, chunks, invalid}
const pending = [];

async function validate(body, run) {
  const parsed = parseJsonEventStream({ stream: body, schema: uiMessageChunkSchema() });
  const reader = parsed.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (value.success) run.chunks.push(value.value);
    else run.invalid.push({ raw: value.rawValue ?? null, error: String(value.error) });
  }
}

// A fetch that records and validates every response the transport reads, chunk by chunk.
async function teeFetch(input, init) {
  const res = await fetch(input, init);
  const run = {
    request: init.body ? JSON.parse(init.body) : { method: init.method ?? "GET", url: String(input) },
    status: res.status,
    headers: Object.fromEntries(res.headers.entries()),
    chunks: [],
    invalid: [],
  };
  runs.push(run);
  if (!res.body) return res;
  const [mine, theirs] = res.body.tee();
  pending.push(validate(mine, run));
  return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
}

const transport = new DefaultChatTransport({ api, fetch: teeFetch });

async function oneAnswer(question) {
  const errors = [];
  const stream = await transport.sendMessages({
    trigger: "submit-message",
    chatId: "js-transport",
    messageId: undefined,
    messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: question }] }],
    abortSignal: undefined,
  });
  let message = null;
  for await (const m of readUIMessageStream({ stream, onError: (e) => errors.push(String(e.message ?? e)) })) {
    message = structuredClone(m);
  }
  await Promise.all(pending);
  return { message, errors, runs };
}

class State {
  constructor() {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
  }
  pushMessage = (m) => { this.messages = [...this.messages, m]; };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (i, m) => { this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)]; };
  snapshot = (x) => structuredClone(x);
}

class NodeChat extends AbstractChat {
  constructor(opts) {
    super({ ...opts, state: new State() });
  }
}

async function twoTurnsAndRegenerate(q1, q2) {
  const finishes = [];
  const errors = [];
  const chat = new NodeChat({
    id: "js-chat",
    transport,
    onFinish: ({ message, isAbort, isError }) => finishes.push({ id: message.id, isAbort, isError }),
    onError: (e) => errors.push(String(e.message ?? e)),
  });
  const snap = () => ({ status: chat.status, error: chat.error ? String(chat.error.message) : null, messages: structuredClone(chat.messages) });
  await chat.sendMessage({ text: q1 });
  const afterFirst = snap();
  await chat.sendMessage({ text: q2 });
  const afterSecond = snap();
  await chat.regenerate();
  const afterRegenerate = snap();
  await Promise.all(pending);
  return { afterFirst, afterSecond, afterRegenerate, finishes, errors, runs };
}

async function failThenRecover(q) {
  const errors = [];
  const chat = new NodeChat({ id: "js-error", transport, onError: (e) => errors.push(String(e.message ?? e)) });
  const snap = () => ({ status: chat.status, error: chat.error ? String(chat.error.message) : null, messages: structuredClone(chat.messages) });
  await chat.sendMessage({ text: q });
  const failed = snap();
  chat.clearError();
  await chat.sendMessage({ text: q });
  const recovered = snap();
  await Promise.all(pending);
  return { failed, recovered, errors, runs };
}

async function resume(chatId) {
  const errors = [];
  const chat = new NodeChat({ id: chatId, transport, onError: (e) => errors.push(String(e.message ?? e)) });
  await chat.resumeStream();
  await Promise.all(pending);
  return { status: chat.status, messages: structuredClone(chat.messages), errors, runs };
}

async function approve(q, decisions) {
  const errors = [];
  const chat = new NodeChat({
    id: "js-approve",
    transport,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    onError: (e) => errors.push(String(e.message ?? e)),
  });
  const snap = () => ({ status: chat.status, error: chat.error ? String(chat.error.message) : null, messages: structuredClone(chat.messages) });
  await chat.sendMessage({ text: q });
  const asked = snap();
  const last = chat.messages[chat.messages.length - 1];
  const requested = last.parts.filter((p) => p.state === "approval-requested");
  for (const p of requested) {
    const approved = decisions[p.type.slice(5)] === true;
    await chat.addToolApprovalResponse({ id: p.approval.id, approved, reason: approved ? undefined : "the user said no" });
  }
  const deadline = Date.now() + 30000; // the answers go out by themselves: wait for that response
  while (Date.now() < deadline && (runs.length < 2 || chat.status !== "ready")) await new Promise((r) => setTimeout(r, 20));
  await Promise.all(pending);
  return { asked, answered: snap(), requested: requested.length, errors, runs };
}

const modes = {
  approve: () => approve(questions[0], JSON.parse(questions[1] ?? "{}")),
  resume: () => resume(questions[0]),
  transport: () => oneAnswer(questions[0]),
  chat: () => twoTurnsAndRegenerate(questions[0], questions[1]),
  error: () => failThenRecover(questions[0]),
};
const out = await modes[mode]();
process.stdout.write(JSON.stringify(out));
