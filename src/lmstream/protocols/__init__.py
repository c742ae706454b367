"""Wire protocols: pure mappers between lmstream's requests and events and what clients send and read.

No web framework here (no Starlette, no Redis): `server/` and the Redis worker frame and send
what these modules produce. Modules:

- `ui_stream`: events -> Vercel AI SDK UI message stream chunks (`UIStreamMapper`), message ids.
- `requests`: request bodies -> processor arguments (UIMessages of `/api/chat`, `/v1/stream`).
- `files`: the files a chat carries: checked, stored once by SHA-256, referenced by URL.
- `ui_approvals`: the browser's tool approval answers, and where pending steps wait.
- `chat`: one `/api/chat` turn (`chat_turn`, `run_chat_turn`), run alike by the server and a worker.
- `openai_chat`, `openai_responses`: the OpenAI-compatible Chat Completions and Responses APIs.
- `openai_turn`: one OpenAI-compatible request made ready to run, by the server or a worker.
- `policy`: what a client may choose about the upstream request (`ClientPolicy`).
- `errors`: `BadRequest`, and what a client is told about a failure (secrets masked).
- `sse`: server-sent events framing, the one place that writes SSE bytes.
"""
