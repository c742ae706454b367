import { forward } from "../../../../../lib/proxy.js";

export const dynamic = "force-dynamic";

// useChat({ resume: true }) calls this on mount: 204 when nothing runs, else the answer so far and the rest.
export async function GET(request, { params }) {
  const { id } = await params;
  return forward(request, `/api/chat/${encodeURIComponent(id)}/stream`);
}
