// A multi-turn chat with a tool call, the way an application drives GLM-4.5 through glm-node.
// Run: node examples/chat-with-tools.mjs [model-dir]   (default: the embedded tiny model, which was
// trained to call tools like this one; a real GLM-4.5 checkpoint works the same way).
// Expected flow: the model thinks (stderr), calls get_weather, gets the result below, and answers with it.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Model } from '../dist/lib/index.js';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const model = await Model.load(process.argv[2] ?? path.join(root, 'models', 'tiny-default'));
const session = model.createSession({ contextLength: Math.min(8192, model.info.maxPositionEmbeddings) });

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
  },
}];
const messages = [{ role: 'user', content: 'What is the weather in Zürich?' }];

for (let turn = 0; turn < 3; turn++) {
  // The whole conversation goes in each time; the session reuses the cached prefix.
  const stream = session.stream(messages, { tools, maxTokens: 256, temperature: 0.6, seed: 1 });
  for await (const chunk of stream) {
    if (chunk.type === 'reasoning') process.stderr.write(chunk.text);
    if (chunk.type === 'text') process.stdout.write(chunk.text);
    if (chunk.type === 'tool_call') process.stdout.write(`[tool call] ${chunk.toolCall.name}(${JSON.stringify(chunk.toolCall.arguments)})`);
  }
  const reply = await stream.result;
  console.log(`\n[${reply.finishReason}; ${reply.usage.cachedTokens}/${reply.usage.promptTokens} prompt tokens from cache]`);
  messages.push({
    role: 'assistant',
    content: reply.text,
    reasoning_content: reply.reasoning,
    tool_calls: reply.toolCalls.map((c) => ({ type: 'function', function: { name: c.name, arguments: c.arguments } })),
  });
  if (reply.toolCalls.length === 0) break;
  for (const call of reply.toolCalls) {
    // Run the tool; malformed calls (call.errors) are answered with the error so the model can retry.
    const output = call.errors.length > 0
      ? { error: call.errors.join('; ') }
      : { city: call.arguments.city, temperature_c: 21, sky: 'clear' };
    messages.push({ role: 'tool', content: JSON.stringify(output) });
  }
}
await model.dispose();  // also frees the session (\`await using\` does this in TypeScript 5.2+)
