"use client";
// A chat page on useChat. The chat id and its messages are kept in localStorage, so a reload finds
// the same conversation. An answer still streaming at the reload is picked up again from the server
// with `lmstream serve --redis`; without Redis the page keeps what had arrived, marked interrupted,
// with Regenerate (lib/lmstream.js: chatStore, reopenChat).
import { Chat, useChat } from "@ai-sdk/react";
import { useEffect, useMemo, useRef, useState } from "react";
import {
  chatStore,
  droppedOf,
  isInterrupted,
  lmstreamTransport,
  reopenChat,
  statusText,
  stopChat,
  usageOf,
} from "../lib/lmstream.js";

function useStableChatId() {
  const [id, setId] = useState(null);
  useEffect(() => {
    let saved = localStorage.getItem("chat-id");
    if (!saved) localStorage.setItem("chat-id", (saved = crypto.randomUUID()));
    setId(saved);
  }, []);
  return id;
}

export default function Page() {
  const id = useStableChatId();
  return id ? <ChatView id={id} /> : null;
}

function ChatView({ id }) {
  const store = useMemo(() => chatStore(), []);
  const saved = useMemo(() => store.load(id), [store, id]);
  const transport = useMemo(() => lmstreamTransport({ hyperparameters: { temperature: 0.7, max_tokens: 512 } }), []);
  const [waiting, setWaiting] = useState(null);
  const chat = useMemo(
    () =>
      new Chat({
        id,
        transport,
        messages: saved.messages, // the conversation as the last page left it
        onData: (part) => {
          const text = statusText(part);
          if (text !== undefined) setWaiting(text);
        },
        onFinish: () => setWaiting(null),
      }),
    [id, transport, saved],
  );
  const { messages, sendMessage, status, stop, error, regenerate } = useChat({ chat });
  const busy = status === "submitted" || status === "streaming";
  const [reopened, setReopened] = useState(saved.pending ? "reopening" : "idle");
  const asked = useRef(false);
  useEffect(() => {
    if (asked.current) return; // once per page load (React runs effects twice in development)
    asked.current = true;
    reopenChat(chat, transport, saved.pending).then(setReopened);
  }, [chat, transport, saved]);
  useEffect(() => {
    if (reopened !== "reopening") store.save(id, messages, busy); // `pending` while it streams
  }, [store, id, messages, busy, reopened]);
  const [input, setInput] = useState("");
  const last = messages.at(-1);
  const cutShort = !busy && reopened === "interrupted" && last && (last.role === "user" || isInterrupted(last));
  return (
    <main style={{ maxWidth: 720, margin: "2rem auto", fontFamily: "system-ui" }}>
      {messages.map((m) => (
        <div key={m.id} style={{ margin: "1rem 0" }}>
          <b>{m.role === "user" ? "You" : "Model"}:</b>{" "}
          {m.parts.map((p, i) => (p.type === "text" ? <span key={i}>{p.text}</span> : null))}
          {isInterrupted(m) && <small> (interrupted)</small>}
          {m.role === "assistant" && droppedOf(m) > 0 && <small> (older messages were left out)</small>}
          {m.role === "assistant" && usageOf(m) && (
            <small style={{ display: "block", color: "#666" }}>
              {usageOf(m).input_tokens ?? "—"} tokens in · {usageOf(m).output_tokens ?? "—"} out
            </small>
          )}
        </div>
      ))}
      {busy && waiting && <p>{waiting}</p>}
      {cutShort && (
        <p>
          The answer was cut short by a reload. <button onClick={() => regenerate()}>Regenerate</button>
        </p>
      )}
      {error && (
        <p role="alert">
          {error.message} <button onClick={() => regenerate()}>Retry</button>
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (input.trim()) sendMessage({ text: input });
          setInput("");
        }}
      >
        <label htmlFor="msg">Message</label>{" "}
        <input id="msg" value={input} onChange={(e) => setInput(e.target.value)} disabled={busy} />
        {busy ? (
          <button type="button" onClick={() => { stop(); stopChat(id); }}>Stop</button>
        ) : (
          <button type="submit">Send</button>
        )}
      </form>
    </main>
  );
}
