#!/usr/bin/env node
/**
 * The `llm-failover-sidecar` command (its commands live in cli/commands.ts).
 * This entry only turns on V8's code cache first, so that from the second start on the
 * sidecar's modules and dependencies load from it: about half the import time, which is most
 * of the time to ready. A read-only filesystem just means no cache.
 */
import { enableCompileCache } from 'node:module';

enableCompileCache();
const { run } = await import('./cli/commands.ts');
await run(process.argv.slice(2));
