#!/usr/bin/env node
// Regenerates the CLI's embedded default model (models/tiny-default/) from TINY_DEFAULT_SPEC.
// Run after `npm run build:ts`; commit the output. test/default-model.test.ts fails if the committed
// files ever differ from what this generator writes, so edit the spec, then rerun this script.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TINY_DEFAULT_SPEC, writeSyntheticCheckpoint } from '../dist/lib/synthetic/checkpoint.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.resolve(root, process.argv[2] ?? 'models/tiny-default');
// Start from an empty folder: a spec change (e.g. fewer shards) must not leave stale files behind.
await rm(out, { recursive: true, force: true });
await writeSyntheticCheckpoint(out, TINY_DEFAULT_SPEC);
console.log(`wrote ${path.relative(root, out) || out}`);
