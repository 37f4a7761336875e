// Builds the connector into a WebAssembly component with componentize-js, through its
// JavaScript API (the jco command line is not needed).
//
//   npm ci && node build.mjs [--source connector.js] [--wit DIR] [--out FILE]
//
// Defaults: connector.js beside this file, the repository's wit/0.1.0, and
// js-couchdb.wasm in the current folder.

import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    source: { type: 'string', default: resolve(here, 'connector.js') },
    wit: { type: 'string', default: resolve(here, '../../../wit/0.1.0') },
    out: { type: 'string', default: 'js-couchdb.wasm' },
  },
});

const { component, imports } = await componentize({
  sourcePath: resolve(values.source),
  witPath: resolve(values.wit),
  worldName: 'destination-connector',
  // Sluice links WASI 0.2 (clocks, random, stdio, an empty filesystem) but not wasi:http:
  // a connector never makes requests itself. Without these two features the engine
  // imports nothing from wasi:http.
  disableFeatures: ['http', 'fetch-event'],
});

const out = resolve(values.out);
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes; imports ${imports.map((i) => i.join('#')).join(', ')})`);
