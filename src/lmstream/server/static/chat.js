// The chat page: conversations (kept in localStorage), sending, streaming, stop, resume.
// It speaks the Vercel AI SDK UI message stream (POST api/chat), as the `ai` package's client does.
import { Answer, el, onFrame, schedule, setApprovalHandler } from "./answer.js";
import { deleteChat, lastChatId, listChats, loadChat, newId, saveChat } from "./store.js";
import { fileNode, forRequest, hasFiles, loadLimits, stored, takeParts, wire } from "./files.js";

const $ = (id) => document.getElementById(id);
const log = $("log");
const EMPTY = "Ask anything. Answers stream token by token.";

let chat = null;        // {id, messages, pending}: the conversation on screen
let run = null;         // the answer streaming now: {chat, answer, controller}
let stick = true;       // follow new text only while the reader is at the bottom
let lastAsk = null;     // what to send again once the key is given
let leaving = false;    // the page is being closed or reloaded: its fetches die, answers do not end

// ------------------------------------------------------------------ scrolling
log.addEventListener("scroll", () => { stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40; }, { passive: true });
function follow() { if (stick) log.scrollTop = log.scrollHeight; }
onFrame(follow);

// ------------------------------------------------------------------ the key (401)
function key() { return sessionStorage.getItem("lmstream-key") || ""; }
function headers(json) {
  const h = json ? { "content-type": "application/json" } : {};
  if (key()) h.authorization = "Bearer " + key();
  return h;
}
function askForKey(wrong) {
  $("keyrow").hidden = false;
  $("keymsg").textContent = wrong
    ? "That access key was not accepted. Check it and try again."
    : "This server needs an access key. Ask the person who runs it, then enter it here.";
  $("key").focus();
}
$("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  const k = $("key").value.trim();
  if (!k) { $("key").focus(); return; }
  sessionStorage.setItem("lmstream-key", k);
  $("keyrow").hidden = true; $("key").value = "";
  if (lastAsk) { const again = lastAsk; lastAsk = null; again(); } else $("input").focus();
});

// ------------------------------------------------------------------ showing a conversation
function addUser(text, files) {
  $("empty")?.remove();
  const m = el("div", "msg user"); const b = el("div", "bubble", text);
  if (files && files.length) { const box = el("div", "files"); for (const p of files) box.appendChild(fileNode(p)); b.prepend(box); }
  m.appendChild(b); $("msgs").appendChild(m);
}
function userFiles(m) { return m.parts.filter((p) => p.type === "file"); }
function userText(m) { return m.parts.filter((p) => p.type === "text").map((p) => p.text).join(""); }

function show(c) {
  chat = c; stick = true;
  $("msgs").replaceChildren();
  if (!c.messages.length) { const p = el("p", "empty", EMPTY); p.id = "empty"; $("msgs").appendChild(p); }
  for (const m of c.messages) {
    if (m.role === "user") addUser(userText(m), userFiles(m));
    else if (m.role === "assistant") new Answer($("msgs"), m, { regenerate, continue: more });
  }
  renderList(); follow();
  if (c.pending) reattach(c);
}

// A reload while an answer streamed: follow it again (the server kept it, e.g. with --redis),
// or keep what had arrived, marked interrupted, with Regenerate.
async function reattach(c) {
  c.pending = false;
  let res = null;
  try { res = await fetch("api/chat/" + encodeURIComponent(c.id) + "/stream", { headers: headers(false) }); } catch (_) { res = null; }
  if (chat !== c) return;
  const last = c.messages[c.messages.length - 1];
  if (res && res.status === 200 && res.body) {
    if (last && last.role === "assistant") { c.messages.pop(); $("msgs").lastChild?.remove(); }
    stream(c, res, new AbortController());
    return;
  }
  if (last && last.role === "assistant") {
    const nodes = $("msgs").querySelectorAll(".msg.assistant");
    last.metadata = { ...(last.metadata || {}), state: "interrupted" };
    for (const p of last.parts) if (p.state === "streaming") p.state = "done";
    nodes[nodes.length - 1]?.remove();
    new Answer($("msgs"), last, { regenerate, continue: more });
  } else if (last && last.role === "user") {
    const a = new Answer($("msgs"), undefined, { regenerate, continue: more }); a.end("interrupted"); c.messages.push(a.msg);
  }
  saveChat(c);
}

function renderList() {
  const ul = $("chats"); ul.replaceChildren();
  const list = listChats();
  if (chat && !list.some((c) => c.id === chat.id)) list.unshift({ id: chat.id, title: "New chat" });
  for (const c of list) {
    const li = el("li"); if (chat && c.id === chat.id) li.className = "current";
    const open = el("button", "chat-open", c.title); open.type = "button"; open.dataset.id = c.id;
    if (chat && c.id === chat.id) open.setAttribute("aria-current", "true");
    const del = el("button", "chat-del", "×"); del.type = "button"; del.dataset.id = c.id;
    del.setAttribute("aria-label", "Delete chat: " + c.title); del.title = "Delete chat";
    li.append(open, del); ul.appendChild(li);
  }
}
$("chats").addEventListener("click", (e) => {
  const b = e.target.closest("button"); if (!b) return;
  const id = b.dataset.id;
  if (b.classList.contains("chat-del")) {
    if (run && run.chat.id === id) stopRun();
    deleteChat(id);
    if (chat && chat.id === id) show({ id: newId(), messages: [], pending: false }); else renderList();
    $("newchat").focus();
  } else if (!chat || id !== chat.id) {
    stopRun(); show(loadChat(id)); closePanel(); $("input").focus();
  }
});

// ------------------------------------------------------------------ sending and streaming
function history(c) { // what the server gets: the conversation without failed answers
  return c.messages.filter((m) => !(m.role === "assistant" && m.metadata && m.metadata.state === "error"));
}

function newest(msgs, keep) { // the newest `keep` messages, starting where a turn starts
  let from = Math.max(0, msgs.length - keep);
  while (from < msgs.length - 1 && msgs[from].role !== "user") from++;
  return msgs.slice(from);
}

// existing: an answer that stopped at tool approvals, continued in place with the person's answers
async function ask(c, trigger, existing) {
  const answer = existing || new Answer($("msgs"), undefined, { regenerate, continue: more });
  const controller = new AbortController();
  run = { chat: c, answer, controller }; setBusy(true); follow();
  c.pending = true; saveChat(c);
  if (chat === c) renderList(); // the list names the chat by its first message from the start
  let res;
  const all = existing ? [...history(c), existing.msg] : history(c);
  try {
    // A chat longer than the server takes (body size, message count) sends only its newest part;
    // the server fits that to the model's window.
    for (let keep = all.length; ; keep = Math.floor(keep / 2)) {
      res = await fetch("api/chat", { method: "POST", headers: headers(true), signal: controller.signal,
        body: JSON.stringify({ id: c.id, messages: forRequest(newest(all, keep)), trigger }) });
      if (keep <= 2 || !(res.status === 413 || (res.status === 400 && /too many messages/.test(await res.clone().text())))) break;
    }
  } catch (e) {
    return done(c, answer, e.name === "AbortError" ? "stopped" : "error", offline(e));
  }
  if (res.ok) stored(); // the server keeps this request's files now: later turns name them
  if (!res.ok) {
    let msg = res.status + " " + res.statusText;
    try { msg = (await res.json()).error.message; } catch (_) { /* not JSON */ }
    if (res.status === 401) {
      answer.root.remove(); run = null; setBusy(false); c.pending = false; saveChat(c);
      lastAsk = () => { if (chat === c) ask(c, trigger); };
      askForKey(Boolean(key()));
      return;
    }
    return done(c, answer, "error", msg);
  }
  return stream(c, res, controller, answer);
}

async function stream(c, res, controller, answer) {
  const resumed = !answer; // a reload picked it up: if it ends cut off, the reload cut it
  answer = answer || new Answer($("msgs"), undefined, { regenerate, continue: more });
  if (!run || run.answer !== answer) { run = { chat: c, answer, controller }; setBusy(true); }
  c.pending = true;
  let saved = performance.now();
  try {
    const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done: eof } = await reader.read();
      if (eof) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        let data = "";
        for (const line of block.split("\n")) if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(line[5] === " " ? 6 : 5);
        if (data && data !== "[DONE]") answer.chunk(JSON.parse(data));
      }
      if (performance.now() - saved > 1000) { saved = performance.now(); keepPartial(c, answer); }
    }
    const m = answer.msg.metadata;
    if (m.error) return done(c, answer, "error", m.error);
    if (m.aborted) return done(c, answer, resumed && !controller.signal.aborted ? "interrupted" : "stopped");
    if (!m.finishReason) return done(c, answer, "error", "The connection closed before the answer finished.");
    return done(c, answer, "done");
  } catch (e) {
    return done(c, answer, e.name === "AbortError" ? "stopped" : "error", offline(e));
  }
}

function keepPartial(c, answer) { // so a reload finds what had arrived
  const msgs = c.messages.filter((m) => m !== answer.msg);
  saveChat({ ...c, messages: [...msgs, answer.msg], pending: true });
}

function offline(e) { // a failed fetch says only "network error" / "Failed to fetch": say what it means
  return "Lost the connection to the server (" + e.message + "). Check that it is still running and reachable, "
    + "then press Regenerate.";
}

function done(c, answer, state, error) {
  if (leaving) { keepPartial(c, answer); return; } // a reload resumes it or marks it interrupted
  answer.end(state, state === "stopped" ? undefined : error);
  if (answer.msg.parts.length || state === "error" || state === "stopped") c.messages.push(answer.msg);
  c.pending = false; saveChat(c);
  if (run && run.answer === answer) { run = null; setBusy(false); }
  if (chat === c) { renderList(); follow(); if (document.activeElement === document.body || !document.activeElement) $("input").focus(); }
}

// Approve / Deny on a tool call: the part answers as the `ai` client's addToolApprovalResponse
// does; once every call of the answer is answered, the server continues the same answer.
setApprovalHandler((part, approved) => {
  const c = chat;
  const answer = c && Answer.of(part);
  if (!answer || run) return;
  part.state = "approval-responded";
  part.approval = { ...part.approval, approved, ...(approved ? {} : { reason: "denied in the chat page" }) };
  schedule(answer.views.get(part));
  saveChat(c);
  if (answer.msg.parts.some((p) => p.state === "approval-requested")) return; // more to answer
  const i = c.messages.indexOf(answer.msg);
  if (i < 0) return;
  c.messages.splice(i, 1); // done() puts it back, continued
  answer.resume();
  ask(c, "submit-message", answer);
});

function regenerate(answer) {
  if (run) return;
  const i = chat.messages.indexOf(answer.msg);
  if (i < 0) return;
  chat.messages.splice(i); // the answer and everything after it
  const nodes = [...$("msgs").children]; const at = nodes.indexOf(answer.root);
  nodes.slice(at).forEach((n) => n.remove());
  if (!chat.messages.length || chat.messages[chat.messages.length - 1].role !== "user") { saveChat(chat); return; }
  ask(chat, "regenerate-message");
}

function stopRun() { // stop the running answer on the server too (with --redis, leaving alone would not)
  if (!run) return;
  const { chat: c, controller } = run;
  fetch("api/chat/" + encodeURIComponent(c.id) + "/stop", { method: "POST", headers: headers(true), body: "{}" }).catch(() => {});
  controller.abort();
}

function setBusy(busy) { $("send").hidden = busy; $("stop").hidden = !busy; }

function sendParts(text, files) {
  const parts = [...(text ? [{ type: "text", text }] : []), ...files];
  chat.messages.push({ id: newId().replace("chat", "msg"), role: "user", parts });
  addUser(text, files); stick = true;
  ask(chat, "submit-message");
}
$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if ((!text && !hasFiles()) || run) return;
  $("input").value = ""; $("input").style.height = "";
  sendParts(text, await takeParts());
});
wire();
loadLimits(headers);
// Continue on an answer cut at the token limit: the chat protocol (UI messages) takes a user
// message last, never an assistant prefix, so Continue is a follow-up asking for the rest.
const CONTINUE = "Continue from where you stopped.";
function more(answer) {
  if (run || !chat || chat.messages[chat.messages.length - 1] !== answer.msg) return;
  sendParts(CONTINUE, []);
}
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("form").requestSubmit(); }
});
$("input").addEventListener("input", (e) => { e.target.style.height = ""; e.target.style.height = Math.min(e.target.scrollHeight, 200) + "px"; });
$("stop").addEventListener("click", () => { stopRun(); $("input").focus(); });
$("newchat").addEventListener("click", () => {
  stopRun(); // the old answer ends (kept in its own chat as stopped); nothing of it goes to the new one
  show({ id: newId(), messages: [], pending: false }); closePanel(); $("input").focus();
});
document.addEventListener("click", (e) => { // copy buttons of code blocks
  const b = e.target.closest("button.copy"); if (!b) return;
  const code = b.closest(".code").querySelector("code").textContent;
  const ok = () => { b.textContent = "Copied"; setTimeout(() => { b.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard) navigator.clipboard.writeText(code).then(ok, () => {}); else ok();
});
function leave() { leaving = true; if (run) keepPartial(run.chat, run.answer); }
window.addEventListener("pagehide", leave);
window.addEventListener("beforeunload", leave);

// the side panel on narrow screens
function closePanel() { document.body.classList.remove("panel-open"); $("menu").setAttribute("aria-expanded", "false"); }
$("menu").addEventListener("click", () => {
  const open = document.body.classList.toggle("panel-open");
  $("menu").setAttribute("aria-expanded", String(open));
  if (open) $("newchat").focus();
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && document.body.classList.contains("panel-open")) { closePanel(); $("menu").focus(); } });

const start = lastChatId();
show(start ? loadChat(start) : { id: newId(), messages: [], pending: false });
$("input").focus();
// for tests and the curious: play(response) shows a UI message stream response as an answer
window.lmstreamPage = { ask: () => run, chat: () => chat, play: (res) => stream(chat, res, new AbortController()) };
