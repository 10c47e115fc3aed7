#!/usr/bin/env node
// The `glm-node` executable (package.json "bin"). Everything else is in cli-program.ts, which can be
// imported without running anything.
import { main } from './cli-program.js';

process.exitCode = await main(process.argv);
