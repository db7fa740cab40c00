// Point the Vercel AI SDK at a Tollgate gateway: its Anthropic provider and its OpenAI provider (chat
// and responses APIs), generateText and streamText each, and an embedding; print one JSON line of results.
//
//   node tests/clients/vercel_ai.mjs [BASE_URL] [API_KEY] [MODEL] [--prompt TEXT] [--max-tokens N]
//
// BASE_URL, API_KEY and MODEL fall back to TOLLGATE_BASE_URL, TOLLGATE_API_KEY and TOLLGATE_MODEL
// (the key is better given in the environment than on a command line). BASE_URL is the gateway's
// root, e.g. http://127.0.0.1:8000; the providers are given BASE_URL + "/v1".
//
// The SDK checks every body and stream event against its own schemas; a stream event it rejects
// becomes an error part in the stream (and a rejected body a thrown error), recorded in `errors`.
import { parseArgs } from "node:util";

import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { embedMany, generateText, streamText } from "ai";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prompt: { type: "string", default: "hello from the Vercel AI SDK" },
    "max-tokens": { type: "string", default: "64" },
  },
});
const [baseURL = process.env.TOLLGATE_BASE_URL, apiKey = process.env.TOLLGATE_API_KEY,
  modelId = process.env.TOLLGATE_MODEL] = positionals;
if (!baseURL || !apiKey || !modelId) {
  console.error("usage: node vercel_ai.mjs BASE_URL API_KEY MODEL (or TOLLGATE_BASE_URL, TOLLGATE_API_KEY, TOLLGATE_MODEL)");
  process.exit(2);
}
const prompt = values.prompt;
const maxOutputTokens = Number(values["max-tokens"]);

const anthropic = createAnthropic({ baseURL: `${baseURL}/v1`, apiKey });
const openai = createOpenAI({ baseURL: `${baseURL}/v1`, apiKey });
const models = {
  anthropic: anthropic.messages(modelId),
  "openai-chat": openai.chat(modelId),
  "openai-responses": openai.responses(modelId),
};

function describe(error) {
  if (error == null) return String(error);
  return `${error.name ?? "Error"}: ${error.message ?? String(error)}`;
}

function usageOf(usage) {
  return usage && { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, totalTokens: usage.totalTokens };
}

async function generate(model) {
  try {
    const result = await generateText({ model, prompt, maxOutputTokens, maxRetries: 0 });
    return { text: result.text, finishReason: result.finishReason, rawFinishReason: result.rawFinishReason ?? null,
             usage: usageOf(result.usage), responseId: result.response.id, errors: [] };
  } catch (error) {
    return { errors: [describe(error)] };
  }
}

async function stream(model) {
  const errors = [];
  let text = "";
  let finish = {};
  let responseId;
  const textParts = { started: 0, ended: 0 };  // every text part the provider opens, it must close
  try {
    const result = streamText({ model, prompt, maxOutputTokens, maxRetries: 0, onError: () => {} });
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") text += part.text;
      else if (part.type === "text-start") textParts.started += 1;
      else if (part.type === "text-end") textParts.ended += 1;
      else if (part.type === "error") errors.push(describe(part.error));
      else if (part.type === "finish-step") responseId = part.response.id;
      else if (part.type === "finish") finish = part;
    }
  } catch (error) {
    errors.push(describe(error));
  }
  return { text, finishReason: finish.finishReason, rawFinishReason: finish.rawFinishReason ?? null,
           usage: usageOf(finish.totalUsage), responseId, textParts, errors };
}

async function embed() {
  try {
    const result = await embedMany({ model: openai.embedding(modelId), values: [prompt, "a second input"],
                                     maxRetries: 0 });
    return { dimensions: result.embeddings.map((e) => e.length), usage: result.usage, errors: [] };
  } catch (error) {
    return { errors: [describe(error)] };
  }
}

// One call at a time, in this order, so the gateway's usage records line up with the results.
const results = [];
for (const [provider, model] of Object.entries(models)) {
  results.push({ provider, mode: "generate", ...(await generate(model)) });
  results.push({ provider, mode: "stream", ...(await stream(model)) });
}
results.push({ provider: "openai-embedding", mode: "embed", ...(await embed()) });
console.log(JSON.stringify(results));
