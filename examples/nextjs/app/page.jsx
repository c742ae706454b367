"use client";
// A chat page on useChat. The chat id is kept in localStorage, so a reload finds the same chat and
// `resume: true` picks up an answer still running on the server (with `lmstream serve --redis`).
import { useChat } from "@ai-sdk/react";
import { useEffect, useMemo, useState } from "react";
import { droppedOf, lmstreamTransport, statusText, stopChat, usageOf } from "../lib/lmstream.js";

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
  const transport = useMemo(() => lmstreamTransport({ hyperparameters: { temperature: 0.7, max_tokens: 512 } }), []);
  const [waiting, setWaiting] = useState(null);
  const [input, setInput] = useState("");
  const { messages, sendMessage, status, stop, error, regenerate } = useChat({
    id,
    transport,
    resume: true,
    onData: (part) => {
      const text = statusText(part);
      if (text !== undefined) setWaiting(text);
    },
    onFinish: () => setWaiting(null),
  });
  const busy = status === "submitted" || status === "streaming";
  return (
    <main style={{ maxWidth: 720, margin: "2rem auto", fontFamily: "system-ui" }}>
      {messages.map((m) => (
        <div key={m.id} style={{ margin: "1rem 0" }}>
          <b>{m.role === "user" ? "You" : "Model"}:</b>{" "}
          {m.parts.map((p, i) => (p.type === "text" ? <span key={i}>{p.text}</span> : null))}
          {m.role === "assistant" && droppedOf(m) > 0 && <small> (older messages were left out)</small>}
          {m.role === "assistant" && usageOf(m) && (
            <small style={{ display: "block", color: "#666" }}>
              {usageOf(m).input_tokens ?? "—"} tokens in · {usageOf(m).output_tokens ?? "—"} out
            </small>
          )}
        </div>
      ))}
      {busy && waiting && <p>{waiting}</p>}
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
