// End-to-end cost of constrained decoding (npm run bench:grammar): the same greedy generations on the
// default model with and without a JSON Schema, interleaved so both see the same machine load, then
// the mask microbenchmark at GLM-4.5's vocabulary size (glm_grammar_bench) when it is built.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { Model } from '../lib/index.js';

const dir = new URL('../../models/tiny-default', import.meta.url).pathname;
const model = await Model.load(dir);
const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 40 }, age: { type: 'integer', minimum: 0, maximum: 150 }, tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, maxItems: 3 } }, required: ['name', 'age'], additionalProperties: false };
// Free text capped at the constrained output's length, so both sides decode the same number of tokens.
const prompt = [{ role: 'user' as const, content: 'Describe a person.' }];
let freeMs = 0, freeTokens = 0, jsonMs = 0, jsonTokens = 0;
for (let round = 0; round < 12; round++) {
  const c = await model.generate(prompt, { responseFormat: { type: 'json_schema', schema }, temperature: 0.8, seed: round, thinking: false, maxTokens: 200 });
  const f = await model.generate(prompt, { temperature: 0.8, seed: round, thinking: false, maxTokens: c.tokens.length, ignoreEos: true });
  if (round < 2) continue;  // warm-up
  jsonMs += c.timings.decodeMs; jsonTokens += c.tokens.length - 1;
  freeMs += f.timings.decodeMs; freeTokens += f.tokens.length - 1;
}
await model.dispose();
const perFree = freeMs / freeTokens, perJson = jsonMs / jsonTokens;
console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(`decode ms/token: free ${perFree.toFixed(3)}, json_schema ${perJson.toFixed(3)}; slowdown ${((perJson / perFree - 1) * 100).toFixed(1)}% (${jsonTokens} vs ${freeTokens} tokens)`);
const mask = new URL('../../build/glm_grammar_bench', import.meta.url).pathname;
if (existsSync(mask)) spawnSync(mask, [], { stdio: 'inherit' });
else console.log('glm_grammar_bench is not built (npm run build:native): mask cost at 151,552 tokens skipped');
