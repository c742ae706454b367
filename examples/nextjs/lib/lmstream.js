// The browser side of talking to `lmstream serve` with the Vercel AI SDK (`ai` 7, `@ai-sdk/react` 4).
// Used by app/page.jsx; tests/test_use_chat_example.py runs this file with the pinned packages.
import { DefaultChatTransport } from "ai";

// The transport, and what the last resume found: `resumed` is null before any, then
// {found: false} (204, nothing runs for this chat) or {found: true, finished} (a `finish` chunk came).
export class LmstreamChatTransport extends DefaultChatTransport {
  resumed = null;

  async reconnectToStream(options) {
    const stream = await super.reconnectToStream(options);
    const resumed = (this.resumed = { found: stream != null, finished: false });
    if (stream == null) return null;
    return stream.pipeThrough(
      new TransformStream({
        transform(chunk, out) {
          if (chunk.type === "finish") resumed.finished = true;
          out.enqueue(chunk);
        },
      }),
    );
  }
}

// POST {api} with {id, messages, trigger, messageId, hyperparameters}; resume with GET {api}/{id}/stream.
// `hyperparameters` go in the body, where lmstream reads them (the server lets through only the
// sampling ones its operator allows: temperature, top_p, max_tokens up to its --max-tokens, ...).
export function lmstreamTransport({ api = "/api/chat", hyperparameters = {}, fetch } = {}) {
  return new LmstreamChatTransport({
    api,
    fetch,
    body: () => ({ hyperparameters }),
    // the default is `${api}/${chatId}/stream` already; spelled out because lmstream serves exactly that
    prepareReconnectToStreamRequest: ({ id }) => ({ api: `${api}/${encodeURIComponent(id)}/stream` }),
  });
}

// Conversations kept in the browser, so a reload finds the chat again, with or without Redis (as
// `lmstream serve`'s own page does). "lmstream-chat:<id>" holds {messages, pending}; `pending` is
// true while an answer streams, so the reloaded page knows to look for it.
export function chatStore(storage = globalThis.localStorage, prefix = "lmstream-chat:") {
  const key = (id) => prefix + id;
  return {
    load(id) {
      try {
        const saved = JSON.parse(storage.getItem(key(id)) ?? "null");
        if (saved && Array.isArray(saved.messages)) return { messages: saved.messages, pending: saved.pending === true };
      } catch (_) {
        /* unreadable: start afresh */
      }
      return { messages: [], pending: false };
    },
    save(id, messages, pending) {
      try {
        storage.setItem(key(id), JSON.stringify({ messages, pending }));
      } catch (_) {
        /* storage full or disabled: the chat still works, a reload just loses it */
      }
    },
    remove(id) {
      try {
        storage.removeItem(key(id));
      } catch (_) {
        /* disabled */
      }
    },
  };
}

// After a reload (`chat` built with the stored messages): when an answer was streaming, ask the
// server for it (GET /api/chat/{id}/stream). With `--redis` it is still running, or finished, and
// its replay replaces the stored partial answer (same message id: nothing twice). Without Redis
// the server stopped it when the page went away (204): the partial answer the page kept stays,
// marked `metadata.interrupted`, for the page to offer Regenerate. Returns "idle", "resumed" or
// "interrupted".
export async function reopenChat(chat, transport, pending) {
  if (!pending) return "idle";
  await chat.resumeStream();
  if (transport.resumed?.finished) return "resumed";
  const last = chat.messages.at(-1);
  if (last?.role === "assistant") {
    chat.messages = [...chat.messages.slice(0, -1), { ...last, metadata: { ...last.metadata, interrupted: true } }];
  }
  return "interrupted";
}

// True for an answer a reload cut short (see reopenChat).
export function isInterrupted(message) {
  return message.role === "assistant" && message.metadata?.interrupted === true;
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
