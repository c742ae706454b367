// `node ai_resume.mjs <base-url> <chat-id>`: the real `ai` client resumes a chat the way
// useChat's resumeStream() does (DefaultChatTransport.reconnectToStream: GET /api/chat/<id>/stream,
// null on 204) and rebuilds the message with readUIMessageStream. Prints {message, errors}.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [base, chatId] = process.argv.slice(2);
const transport = new DefaultChatTransport({ api: `${base}/api/chat` });
const stream = await transport.reconnectToStream({ chatId });
const errors = [];
let message = null;
if (stream) {
  for await (const m of readUIMessageStream({ stream, onError: (e) => errors.push(String(e.message ?? e)) })) {
    message = structuredClone(m);
  }
}
console.log(JSON.stringify({ message, errors }));
