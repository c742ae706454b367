import { forward } from "../../../../../lib/proxy.js";

export async function POST(request, { params }) {
  const { id } = await params;
  return forward(request, `/api/chat/${encodeURIComponent(id)}/stop`);
}
