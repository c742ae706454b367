// Conversations in localStorage, so a reload (or tomorrow) finds them again.
// "lmstream:chats" lists {id, title, updated}; "lmstream:chat:<id>" holds {id, messages, pending}.
// `pending` is set while an answer streams: a reload then resumes it or marks it interrupted.
const INDEX = "lmstream:chats";
const key = (id) => "lmstream:chat:" + id;

export function newId() {
  const b = new Uint8Array(9); crypto.getRandomValues(b);
  return "chat-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function read(k, fallback) {
  try { const v = localStorage.getItem(k); return v ? JSON.parse(v) : fallback; } catch (_) { return fallback; }
}

function write(k, v) {
  try { localStorage.setItem(k, JSON.stringify(v)); return true; } catch (_) { return false; } // full or disabled
}

// Saved data may be old, hand-edited or written by another page: rows and messages that are
// not what this page writes are skipped or given a plain title, never trusted to draw.
export function listChats() {
  const list = read(INDEX, []);
  if (!Array.isArray(list)) return [];
  return list.filter((c) => c && typeof c === "object" && typeof c.id === "string")
    .map((c) => ({ id: c.id, title: typeof c.title === "string" && c.title ? c.title : "Untitled chat", updated: c.updated }));
}

function goodMessage(m) {
  return m && typeof m === "object" && (m.role === "user" || m.role === "assistant") && Array.isArray(m.parts)
    && m.parts.every((p) => p && typeof p === "object" && typeof p.type === "string");
}

export function loadChat(id) {
  const c = read(key(id), null);
  if (!c || typeof c !== "object" || !Array.isArray(c.messages)) return { id, messages: [], pending: false };
  return { ...c, id, messages: c.messages.filter(goodMessage), pending: Boolean(c.pending) };
}

function titleOf(chat) {
  const first = chat.messages.find((m) => m.role === "user");
  const text = first ? first.parts.filter((p) => p.type === "text").map((p) => p.text).join(" ") : "";
  return text.replace(/\s+/g, " ").trim().slice(0, 60) || "New chat";
}

export function saveChat(chat) {
  if (!chat.messages.length) return; // an empty chat is not worth a row in the list
  if (!write(key(chat.id), chat)) return;
  const list = listChats().filter((c) => c.id !== chat.id);
  list.unshift({ id: chat.id, title: titleOf(chat), updated: Date.now() });
  write(INDEX, list.slice(0, 200));
}

export function deleteChat(id) {
  try { localStorage.removeItem(key(id)); } catch (_) { /* disabled storage */ }
  write(INDEX, listChats().filter((c) => c.id !== id));
}

export function lastChatId() { const l = listChats(); return l.length ? l[0].id : null; }
