// One assistant answer: its UIMessage (parts, as the `ai` package keeps them) and its DOM.
// Chunks update the parts at once; the DOM follows at most once per animation frame (frame()).
// A part kind is drawn by an entry of PART_VIEWS, and a tool call's look per state by TOOL_STATES,
// so new kinds (tool approval, say) are one entry each.
import { MarkdownView } from "./markdown.js";
import { fileNode, setImage } from "./files.js";

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; // never innerHTML: model output is text
  return e;
}

function json(v) {
  if (typeof v === "string") return v;
  const flat = JSON.stringify(v);
  return flat && flat.length <= 90 ? flat : JSON.stringify(v, null, 2);
}

// ------------------------------------------------------------------ the frame scheduler
// At most one render per animation frame, and at least GAP_MS apart: each render repaints the
// visible answer (it scrolls), so a fast stream costs paint per render, not per delta.
const GAP_MS = 50;
const dirty = new Set();
let scheduled = false;
let last = 0;
let afterFrame = () => {};
export function onFrame(fn) { afterFrame = fn; }
export function schedule(view) {
  dirty.add(view);
  if (scheduled) return;
  scheduled = true;
  const wait = last + GAP_MS - performance.now();
  if (wait > 0) setTimeout(() => requestAnimationFrame(frame), wait); else requestAnimationFrame(frame);
}
function frame() {
  scheduled = false; last = performance.now();
  const views = [...dirty]; dirty.clear();
  for (const v of views) if (v.render(false)) schedule(v); // true: still has work (throttled)
  afterFrame();
}
export function flushNow(view) { dirty.delete(view); view.render(true); }

// ------------------------------------------------------------------ part views
class TextView {
  constructor(part, box) { this.part = part; this.node = el("div", "text md"); box.appendChild(this.node); this.md = new MarkdownView(this.node); this.md.append(part.text || ""); }
  delta(d) { this.part.text += d; this.md.append(d); }
  render(final) { return this.md.render(final); }
}

class ReasoningView {
  constructor(part, box) {
    this.part = part; this.shown = 0;
    this.node = el("details", "thinking"); this.node.open = part.state === "streaming";
    this.summary = el("summary", null, part.state === "streaming" ? "Thinking…" : "Reasoning");
    this.body = el("div", "body"); this.node.append(this.summary, this.body); box.appendChild(this.node);
  }
  delta(d) { this.part.text += d; }
  end() { this.part.state = "done"; this.node.open = false; this.summary.textContent = "Reasoning"; }
  render() { // append only the new text: linear however long the thinking runs
    const t = this.part.text;
    if (t.length > this.shown) { this.body.appendChild(document.createTextNode(t.slice(this.shown))); this.shown = t.length; }
    return false;
  }
}

// A person's answer to a tool approval request: set by the page (chat.js), called with
// (part, approved) when Approve or Deny is clicked.
let onApproval = () => {};
export function setApprovalHandler(fn) { onApproval = fn; }

function approvalButtons(v, p) {
  v.node.classList.add("asking");
  const bar = el("div", "actions approval");
  for (const [label, ok, cls] of [["Approve", true, "small"], ["Deny", false, "secondary small"]]) {
    const b = el("button", cls, label); b.type = "button";
    b.onclick = () => { bar.querySelectorAll("button").forEach((x) => { x.disabled = true; }); onApproval(p, ok); };
    bar.appendChild(b);
  }
  v.node.appendChild(bar);
}

// How a tool call looks in each state: [label, extra(view, part) drawing more (buttons, output)].
export const TOOL_STATES = {
  "input-streaming": ["preparing…"],
  "input-available": ["running…", (v, p) => { const g = p.progress; if (g) v.state.textContent = "running… " + g.progress + (g.total != null ? "/" + g.total : "") + (g.message ? " · " + g.message : ""); }],
  "approval-requested": ["needs your approval", approvalButtons],
  "approval-responded": ["answered…", (v, p) => { v.state.textContent = p.approval && p.approval.approved ? "approved, running…" : "denied"; }],
  "output-denied": ["denied", (v) => v.node.classList.add("denied")],
  "output-available": ["done", (v, p) => v.node.appendChild(el("pre", "out", "→ " + json(p.output)))],
  "output-error": ["failed", (v, p) => { v.node.classList.add("failed"); v.node.appendChild(el("pre", "out", "→ " + (p.errorText || ""))); }],
};

class ToolView {
  constructor(part, box) {
    this.part = part; this.raw = "";
    this.node = el("div", "tool"); const head = el("div", "head");
    head.append(el("span", "badge", "tool"), document.createTextNode(part.type === "dynamic-tool" ? part.toolName : part.type.slice(5)));
    this.state = el("span", "state"); head.appendChild(this.state);
    this.input = el("pre", "in"); this.node.append(head, this.input); box.appendChild(this.node);
    this.drawn = null;
  }
  render() {
    const p = this.part;
    if (this.drawn === p.state) return false;
    this.drawn = p.state;
    const [label, extra] = TOOL_STATES[p.state] || [p.state];
    this.state.textContent = label;
    this.input.textContent = p.input !== undefined ? json(p.input) : this.raw;
    this.node.querySelectorAll(".out, .actions").forEach((n) => n.remove());
    this.node.classList.remove("asking");
    if (extra) extra(this, p);
    return false;
  }
}

class ContextView { // data-context: the server left older messages out to fit the model
  constructor(part, box) {
    const n = part.data && part.data.dropped;
    box.appendChild(el("div", "note context", `Older messages were left out to fit the model's memory (${n} not sent).`));
  }
  render() { return false; }
}

class ResetView { // data-reset: a fallback model took over from one that failed
  constructor(part, box) {
    const d = part.data || {};
    const how = d.discarded > 0 ? " (its partial answer was replaced)" : "";
    box.appendChild(el("div", "note reset", `switched to ${d.to} after ${d.from} failed${how}`));
  }
  render() { return false; }
}

const adopted = new WeakMap(); // a model's file part -> the preview <img> it takes over (one image, in place)

class FileView { // file: a file the model made; a raster image is drawn, anything else is a chip
  constructor(part, box) {
    this.node = el("div", "answer-image");
    this.node.appendChild(fileNode(part, adopted.get(part)));
    box.appendChild(this.node);
  }
  render() { return false; }
}

class FilePreviewView { // data-file-preview: the image as it sharpens, until the file itself arrives
  constructor(part, box) {
    this.part = part; this.shown = null;
    this.node = el("div", "answer-image preview"); this.img = el("img"); this.img.alt = "image being made";
    this.node.appendChild(this.img); box.appendChild(this.node);
  }
  render() {
    const d = this.part.data || {};
    if (d.done) { this.node.remove(); return false; }
    if (d.url && d.url !== this.shown && setImage(this.img, d.url, d.mediaType)) this.shown = d.url;
    return false;
  }
}

export const PART_VIEWS = { text: TextView, reasoning: ReasoningView, tool: ToolView, "data-context": ContextView, "data-reset": ResetView, file: FileView, "data-file-preview": FilePreviewView };
function viewFor(part) {
  if (part.type.startsWith("tool-") || part.type === "dynamic-tool") return PART_VIEWS.tool;
  return PART_VIEWS[part.type] || null;
}

// ------------------------------------------------------------------ the answer
const byPart = new WeakMap(); // tool part -> its Answer (Approve/Deny find where to continue)

export class Answer {
  static of(part) { return byPart.get(part); }
  // msg: a stored UIMessage to show again, or undefined for a new answer
  constructor(container, msg, actions) {
    this.msg = msg || { id: "", role: "assistant", parts: [], metadata: { state: "streaming" } };
    this.msg.metadata = this.msg.metadata || {};
    this.actions = actions;   // {regenerate(answer)}
    this.root = el("div", "msg assistant"); this.bubble = el("div", "bubble");
    this.partsBox = el("div", "parts"); this.bubble.appendChild(this.partsBox);
    this.root.appendChild(this.bubble); container.appendChild(this.root);
    this.views = new Map();  // part -> view
    this.open = {};          // text/reasoning id -> part
    this.tools = {};         // toolCallId -> part
    this.t0 = performance.now(); this.firstAt = null; this.deltas = 0;
    for (const p of this.msg.parts) this.add(p, true);
    if (this.msg.metadata.state === "streaming") { this.root.classList.add("streaming"); this.waiting(null); } else this.finish();
  }
  add(part, restoring) {
    if (!restoring) this.msg.parts.push(part);
    if (part.toolCallId) { this.tools[part.toolCallId] = part; byPart.set(part, this); } // a continued answer finds its calls
    const V = viewFor(part);
    if (!V) return null;
    const v = new V(part, this.partsBox); this.views.set(part, v);
    if (restoring) flushNow(v); else schedule(v);
    return v;
  }
  first() { if (this.firstAt === null) { this.firstAt = performance.now(); this.status?.remove(); this.status = null; } }
  waiting(status) { // the typing indicator, or where the request waits in the model's queue
    if (this.firstAt !== null) return;
    if (!this.status) { this.status = el("div", "status"); this.status.setAttribute("role", "status"); this.bubble.insertBefore(this.status, this.partsBox); }
    if (status && status.state === "queued") { this.status.className = "status queued"; this.status.textContent = "waiting for the model (" + queueText(status.position) + ")"; }
    else { this.status.className = "status typing"; this.status.replaceChildren(el("span"), el("span"), el("span")); this.status.setAttribute("aria-label", "The model is writing"); }
  }
  text(id, delta) {
    this.first(); this.deltas++;
    let part = this.open[id];
    if (!part || part.type !== "text") { part = { type: "text", text: "", state: "streaming" }; this.open[id] = part; this.add(part); }
    this.views.get(part).delta(delta); schedule(this.views.get(part));
  }
  reasoning(id, delta) {
    this.first();
    let part = this.open[id];
    if (!part) { part = { type: "reasoning", text: "", state: "streaming" }; this.open[id] = part; this.add(part); }
    if (delta) { this.views.get(part).delta(delta); schedule(this.views.get(part)); }
  }
  endPart(id) { const p = this.open[id]; if (!p) return; const v = this.views.get(p); p.state = "done"; if (v.end) v.end(); delete this.open[id]; }
  reset(c) { // a fallback model took over; a restart (discarded > 0) voids this step's partial answer
    const d = c.data || {};
    if (d.discarded > 0) {
      const parts = this.msg.parts; let i = parts.length;
      while (i > 0 && parts[i - 1].type !== "step-start") i--;
      const gone = new Set(parts.slice(i).filter((p) => p.type === "text" || p.type === "reasoning" || p.type.startsWith("tool-")));
      for (const p of gone) {
        const v = this.views.get(p);
        if (v) { v.node.remove(); dirty.delete(v); this.views.delete(p); }
        if (p.toolCallId) delete this.tools[p.toolCallId];
      }
      for (const [id, p] of Object.entries(this.open)) if (gone.has(p)) delete this.open[id];
      this.msg.parts = parts.filter((p) => !gone.has(p));
    }
    this.add({ type: "data-reset", id: c.id, data: d });
  }
  tool(c, update) {
    this.first();
    let p = this.tools[c.toolCallId];
    if (!p) { p = { type: "tool-" + c.toolName, toolCallId: c.toolCallId, state: "input-streaming", input: undefined }; this.tools[c.toolCallId] = p; this.add(p); }
    update(p, this.views.get(p)); schedule(this.views.get(p));
  }
  chunk(c) {
    switch (c.type) {
      case "start": if (c.messageId) this.msg.id = c.messageId; break;
      case "start-step": this.msg.parts.push({ type: "step-start" }); break;
      case "text-delta": this.text(c.id, c.delta); break;
      case "text-end": case "reasoning-end": this.endPart(c.id); break;
      case "reasoning-start": case "reasoning-delta": this.reasoning(c.id, c.delta); break;
      case "tool-input-start": this.tool(c, () => {}); break;
      case "tool-input-delta": this.tool(c, (p, v) => { v.raw += c.inputTextDelta; v.drawn = null; }); break;
      case "tool-input-available": this.tool(c, (p) => { p.state = "input-available"; p.input = c.input; }); break;
      case "tool-output-available": this.tool(c, (p) => { p.state = "output-available"; p.output = c.output; }); break;
      case "tool-output-error": this.tool(c, (p) => { p.state = "output-error"; p.errorText = c.errorText; }); break;
      case "tool-approval-request": this.tool(c, (p) => { p.state = "approval-requested"; p.approval = { id: c.approvalId }; }); break;
      case "tool-output-denied": this.tool(c, (p) => { p.state = "output-denied"; }); break;
      case "data-tool-progress": if (this.tools[c.id]) this.tool({ toolCallId: c.id }, (p, v) => { p.progress = c.data; v.drawn = null; }); break;
      case "data-usage": this.msg.metadata.usage = { ...c.data, ttft_page: this.firstAt !== null ? (this.firstAt - this.t0) / 1000 : null, deltas: this.deltas }; break;
      case "data-status": this.waiting(c.data); break;
      case "data-reset": this.reset(c); break;
      case "data-file-preview": {
        this.first();
        const old = c.id && this.msg.parts.find((p) => p.type === c.type && p.id === c.id);
        if (old) { old.data = c.data; schedule(this.views.get(old)); } else this.preview = this.add({ type: c.type, id: c.id, data: c.data });
        break;
      }
      case "file": {
        this.first();
        const part = { type: "file", url: c.url, mediaType: c.mediaType };
        const prev = this.preview; this.preview = null;
        if (prev && prev.img) adopted.set(part, prev.img); // the preview's image becomes the file's
        const v = this.add(part);
        if (prev && v && prev.node.isConnected) prev.node.before(v.node);
        break;
      }
      case "error": this.msg.metadata.error = c.errorText; break;
      case "abort": this.msg.metadata.aborted = true; break;
      case "finish": this.msg.metadata.finishReason = c.finishReason || "stop"; break;
      default:
        if (c.type.startsWith("data-") && !c.transient) { // kept like the ai client keeps it
          const old = c.id && this.msg.parts.find((p) => p.type === c.type && p.id === c.id);
          if (old) old.data = c.data; else this.add({ type: c.type, id: c.id, data: c.data });
        }
    }
  }
  resume() { // streaming again into the same message (after tool approvals)
    const m = this.msg.metadata;
    m.state = "streaming"; delete m.finishReason; delete m.error; delete m.aborted;
    this.root.classList.add("streaming");
    this.bubble.querySelectorAll(".stats, .error, .stopped, :scope > .actions").forEach((n) => n.remove());
    this.t0 = performance.now();
  }
  // state: "done" | "stopped" | "error" | "interrupted"; called when the stream is over
  end(state, error) {
    for (const v of this.views.values()) flushNow(v);
    for (const id of Object.keys(this.open)) this.endPart(id);
    this.msg.metadata.state = state;
    if (error) this.msg.metadata.error = error; else delete this.msg.metadata.error;
    if (!this.msg.id) this.msg.id = "msg-" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    this.finish();
  }
  finish() {
    this.root.classList.remove("streaming");
    this.status?.remove(); this.status = null;
    this.bubble.querySelectorAll(".stats, .error, .stopped, :scope > .actions").forEach((n) => n.remove()); // not a tool's buttons
    const m = this.msg.metadata;
    if (m.usage) this.bubble.appendChild(el("div", "stats", usageLine(m.usage)));
    if (m.state === "error") { const e = el("div", "error"); e.setAttribute("role", "alert"); e.append(el("strong", null, "Error: "), document.createTextNode(m.error || "the request failed")); this.bubble.appendChild(e); }
    if (m.state === "stopped") this.bubble.appendChild(el("div", "stopped", "Stopped."));
    if (m.state === "interrupted") this.bubble.appendChild(el("div", "stopped interrupted", "Interrupted: the page was closed or reloaded before this answer finished."));
    if (m.state === "done" && !this.msg.parts.some((p) => p.type === "text" || p.type === "file" || p.type.startsWith("tool-"))) this.bubble.appendChild(el("div", "stopped", "(no answer)"));
    const cut = m.state === "done" && m.finishReason === "length";
    if (cut) { // the model hit the token limit: the answer is not whole, and says so
      const n = m.usage && m.usage.output_tokens;
      this.bubble.appendChild(el("div", "stopped cut", (n ? `Cut at ${n} tokens` : "Cut at the token limit") + " (the answer is not finished)."));
    }
    const bar = el("div", "actions");
    const again = el("button", "secondary small", m.state === "error" ? "Retry" : "Regenerate");
    again.type = "button"; again.onclick = () => this.actions.regenerate(this);
    bar.appendChild(again);
    if (cut && this.actions.continue) { // the chat protocol takes a user turn last: Continue asks for the rest
      const more = el("button", "small continue", "Continue"); more.type = "button";
      more.onclick = () => this.actions.continue(this);
      bar.prepend(more);
    }
    this.bubble.appendChild(bar);
  }
  focusAction() { this.bubble.querySelector(".actions button")?.focus(); }
}

// The engine numbers the queue from 1 (1: next in line); "N ahead" counts the requests before it.
export function queueText(position) {
  const ahead = Number(position) - 1;
  if (!(ahead >= 1)) return "next in line";
  return ahead + " ahead";
}

const dash = (v) => (v == null ? "—" : String(v));
export function usageLine(u) {
  const bits = [dash(u.input_tokens) + " tokens in", dash(u.output_tokens) + " out"];
  const ttft = u.time_to_first_token != null ? u.time_to_first_token : u.ttft_page;
  bits.push("first token " + (ttft != null ? ttft.toFixed(2) + " s" : "—"));
  const gen = u.duration != null && ttft != null ? u.duration - ttft : null;
  const n = u.output_tokens || u.deltas;
  if (gen && gen > 0 && n) bits.push((n / gen).toFixed(1) + " tokens/s");
  if (u.cost != null) bits.push("$" + (typeof u.cost === "number" ? u.cost : u.cost.total ?? 0).toFixed(4));
  if (u.cache && u.cache.hit) bits.unshift("cached");
  else if (u.cache && u.cache.joined) bits.unshift("cached (shared)");
  return bits.join(" · ");
}
