// Server side (Next.js route handlers): forward to `lmstream serve`, adding its API key here so the
// key never reaches browser code. LMSTREAM_URL (default http://127.0.0.1:8000) and LMSTREAM_API_KEY
// are server-only environment variables (no NEXT_PUBLIC_ prefix).
const PASS_BACK = ["content-type", "cache-control", "x-vercel-ai-ui-message-stream"];

export async function forward(request, path) {
  const upstream = process.env.LMSTREAM_URL ?? "http://127.0.0.1:8000";
  const headers = { "content-type": "application/json" };
  if (process.env.LMSTREAM_API_KEY) headers.authorization = `Bearer ${process.env.LMSTREAM_API_KEY}`;
  const lastEventId = request.headers.get("last-event-id");
  if (lastEventId) headers["last-event-id"] = lastEventId;
  const init = { method: request.method, headers, signal: request.signal }; // the browser leaving aborts upstream
  if (request.method === "POST") init.body = await request.text();
  const res = await fetch(upstream + path, init);
  const out = new Headers();
  for (const name of PASS_BACK) if (res.headers.get(name)) out.set(name, res.headers.get(name));
  return new Response(res.status === 204 ? null : res.body, { status: res.status, headers: out });
}
