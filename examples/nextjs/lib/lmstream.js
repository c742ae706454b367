// The browser side of talking to `lmstream serve` with the Vercel AI SDK (`ai` 7, `@ai-sdk/react` 4).
// Used by app/page.jsx; tests/test_use_chat_example.py runs this file with the pinned packages.
import { DefaultChatTransport } from "ai";

// POST {api} with {id, messages, trigger, messageId, hyperparameters}; resume with GET {api}/{id}/stream.
// `hyperparameters` go in the body, where lmstream reads them (the server lets through only the
// sampling ones its operator allows: temperature, top_p, max_tokens up to its --max-tokens, ...).
export function lmstreamTransport({ api = "/api/chat", hyperparameters = {}, fetch } = {}) {
  return new DefaultChatTransport({
    api,
    fetch,
    body: () => ({ hyperparameters }),
    // the default is `${api}/${chatId}/stream` already; spelled out because lmstream serves exactly that
    prepareReconnectToStreamRequest: ({ id }) => ({ api: `${api}/${encodeURIComponent(id)}/stream` }),
  });
}

// Stop the answer on the server. useChat's stop() only aborts the fetch: without Redis the server
// then cancels the answer, but with `--redis` the answer keeps running (a reload can resume it)
// until this POST arrives.
export async function stopChat(id, { api = "/api/chat", fetch: f = fetch } = {}) {
  const res = await f(`${api}/${encodeURIComponent(id)}/stop`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  return res.ok ? (await res.json()).stopped : false;
}

// Usage and timings of a finished answer: the `data-usage` part lmstream adds to the message.
// Fields are null when the provider did not say (show "—", not 0).
export function usageOf(message) {
  return message.parts.find((p) => p.type === "data-usage")?.data ?? null;
}

// useChat's onData gets transient parts: `data-status` says where the request waits for the
// embedded model ({state: "queued", position: N} until {state: "running"}).
export function statusText(part) {
  if (part.type !== "data-status") return undefined;
  return part.data.state === "queued" ? `waiting for the model (${part.data.position} ahead)` : null;
}

// Older messages the server left out to fit the model's window (a `data-context` part), or 0.
export function droppedOf(message) {
  return message.parts.find((p) => p.type === "data-context")?.data.dropped ?? 0;
}
