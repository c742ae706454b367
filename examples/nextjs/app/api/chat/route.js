import { forward } from "../../../lib/proxy.js";

export const dynamic = "force-dynamic"; // a stream, never cached

export function POST(request) {
  return forward(request, "/api/chat");
}
