// Drives lmstream's OpenAI-compatible routes with two clients no one here wrote (versions pinned
// in package-lock.json): the `openai` npm package (chat.completions.create with stream and
// include_usage, and a 404 for an unknown model) and the Vercel AI SDK's
// `@ai-sdk/openai-compatible` provider through `streamText`.
//
//   node openai_clients.mjs <base-url ending in /v1> <api-key> <model-name>
//
// Prints one JSON object on stdout for the pytest side (tests/test_openai_api_clients.py).
import OpenAI from "openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { streamText } from "ai";

const [baseURL, apiKey, model] = process.argv.slice(2);

async function withOpenAI() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let deltas = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice?.delta?.content) {
      text += choice.delta.content;
      deltas += 1;
    }
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  let status404 = null;
  try {
    await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "Hi" }] });
  } catch (err) {
    status404 = err.status ?? null;
  }
  return { text, deltas, finish, usage, status404 };
}

async function withAISDK() {
  const provider = createOpenAICompatible({ name: "lmstream", baseURL, apiKey, includeUsage: true });
  const result = streamText({ model: provider(model), prompt: "Hi" });
  let text = "";
  let deltas = 0;
  let reasoning = "";
  const errors = [];
  for await (const part of result.fullStream) {
    if (part.type === "text-delta") {
      text += part.text;
      deltas += 1;
    } else if (part.type === "reasoning-delta") {
      reasoning += part.text;
    } else if (part.type === "error") {
      errors.push(String(part.error));
    }
  }
  return { text, deltas, reasoning, errors, finishReason: await result.finishReason, usage: await result.usage };
}

const out = { openai: await withOpenAI(), aisdk: await withAISDK() };
console.log(JSON.stringify(out));
