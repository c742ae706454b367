// `node use_chat_example.mjs <example-dir> <scenario>`: runs the Next.js example (docs/nextjs.md)
// (examples/nextjs, copied beside this file so its imports resolve to the pinned packages) the way
// the app runs it: its route handlers (lib/proxy.js, holding the API key) behind a small HTTP
// server, and @ai-sdk/react's Chat (the object useChat drives) with its transport (lib/lmstream.js).
// The lmstream server is LMSTREAM_URL (key in LMSTREAM_API_KEY). Prints one JSON object.
import http from "node:http";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { Chat } from "@ai-sdk/react";

const [dir, scenario] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(`${dir}/${p}`).href);
const lib = await load("lib/lmstream.js");
const chatRoute = await load("app/api/chat/route.js");
const streamRoute = await load("app/api/chat/[id]/stream/route.js");
const stopRoute = await load("app/api/chat/[id]/stop/route.js");

// Next.js's part: node request -> web Request -> the route handler -> node response.
const seen = []; // what the browser side sent to the app (never the key)
const app = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://app.local");
  seen.push({ method: req.method, path: url.pathname, authorization: req.headers.authorization ?? null });
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  const request = new Request(url, {
    method: req.method,
    headers: req.headers,
    body: req.method === "POST" ? Readable.toWeb(req) : undefined,
    duplex: "half",
    signal: abort.signal,
  });
  let m;
  let response;
  if (url.pathname === "/api/chat" && req.method === "POST") response = await chatRoute.POST(request);
  else if ((m = url.pathname.match(/^\/api\/chat\/([^/]+)\/stream$/)) && req.method === "GET")
    response = await streamRoute.GET(request, { params: Promise.resolve({ id: decodeURIComponent(m[1]) }) });
  else if ((m = url.pathname.match(/^\/api\/chat\/([^/]+)\/stop$/)) && req.method === "POST")
    response = await stopRoute.POST(request, { params: Promise.resolve({ id: decodeURIComponent(m[1]) }) });
  else response = new Response("not found", { status: 404 });
  res.writeHead(response.status, Object.fromEntries(response.headers));
  try {
    if (response.body) for await (const chunk of response.body) res.write(chunk);
  } catch (_) { /* the client left */ }
  res.end();
});
await new Promise((ok) => app.listen(0, "127.0.0.1", ok));
const api = `http://127.0.0.1:${app.address().port}/api/chat`;
const transport = () => lib.lmstreamTransport({ api, hyperparameters: { temperature: 0.25, max_tokens: 64 } });
const textOf = (m) => m.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
const until = async (pred, ms = 15000) => {
  const end = Date.now() + ms;
  while (!pred()) { if (Date.now() > end) throw new Error("timed out"); await new Promise((r) => setTimeout(r, 20)); }
};

const out = { scenario };
try {
  if (scenario === "turns") {
    const data = [];
    const chat = new Chat({ id: "react-1", transport: transport(), onData: (p) => data.push(p) });
    await chat.sendMessage({ text: "What is in Tokyo?" });
    await chat.sendMessage({ text: "And to eat?" });
    out.status = chat.status;
    out.error = chat.error?.message ?? null;
    out.texts = chat.messages.map((m) => [m.role, textOf(m)]);
    out.usage = lib.usageOf(chat.messages[3]);
    out.status_texts = data.map(lib.statusText).filter((t) => t !== undefined);
  } else if (scenario === "stop") {
    const chat = new Chat({ id: "react-stop", transport: transport() });
    const sending = chat.sendMessage({ text: "Count slowly" });
    await until(() => chat.messages.length === 2 && textOf(chat.messages[1]).length > 5);
    chat.stop(); // what useChat's stop() does: abort the fetch ...
    out.stopped = await lib.stopChat("react-stop", { api }); // ... and ask the server to stop
    await sending;
    out.status = chat.status;
    out.partial = textOf(chat.messages[1]);
  } else if (scenario === "resume") {
    const first = new Chat({ id: "react-resume", transport: transport() });
    const sending = first.sendMessage({ text: "Count slowly" });
    await until(() => first.messages.length === 2 && textOf(first.messages[1]).length > 5);
    out.before_reload = textOf(first.messages[1]);
    first.stop(); // the tab closes: only the fetch ends; with --redis the answer goes on
    await sending;
    // the reloaded page: same id, the stored user message, useChat({ resume: true }) -> resumeStream()
    const again = new Chat({ id: "react-resume", transport: transport(), messages: [first.messages[0]] });
    await again.resumeStream();
    out.status = again.status;
    out.error = again.error?.message ?? null;
    out.after_reload = again.messages.length > 1 ? textOf(again.messages[1]) : null;
    const nothing = new Chat({ id: "react-idle", transport: transport() });
    await nothing.resumeStream(); // 204: nothing runs for this chat
    out.idle_messages = nothing.messages.length;
  } else if (scenario === "reload") {
    // app/page.jsx across a reload: its effect saves the messages (pending while streaming) in
    // localStorage; the reloaded page builds its Chat from them and calls reopenChat.
    const items = new Map();
    const storage = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, String(v)), removeItem: (k) => items.delete(k) };
    const store = lib.chatStore(storage);
    const first = new Chat({ id: "react-reload", transport: transport() });
    const sending = first.sendMessage({ text: "Count slowly" });
    await until(() => first.messages.length === 2 && textOf(first.messages[1]).length > 5);
    store.save("react-reload", first.messages, true);
    out.before_reload = textOf(lib.chatStore(storage).load("react-reload").messages[1]);
    first.stop(); // the tab goes away: only the fetch ends
    await sending;
    const saved = store.load("react-reload");
    const t = transport();
    const again = new Chat({ id: "react-reload", transport: t, messages: saved.messages });
    out.pending = saved.pending;
    out.reopened = await lib.reopenChat(again, t, saved.pending);
    out.roles = again.messages.map((m) => m.role);
    out.after_reload = textOf(again.messages.at(-1));
    out.interrupted = lib.isInterrupted(again.messages.at(-1));
    out.status = again.status;
    out.error = again.error?.message ?? null;
    if (out.reopened === "interrupted") {
      await again.regenerate(); // the page's Regenerate button
      out.regenerated = textOf(again.messages.at(-1));
      out.roles_after_regenerate = again.messages.map((m) => m.role);
    }
    const idleTransport = transport();
    const idle = new Chat({ id: "react-idle", transport: idleTransport });
    out.idle = await lib.reopenChat(idle, idleTransport, false); // nothing was streaming: no request
  }
} catch (e) {
  out.exception = String(e && e.stack ? e.stack : e);
}
out.seen = seen;
console.log(JSON.stringify(out));
app.close();
process.exit(0);
