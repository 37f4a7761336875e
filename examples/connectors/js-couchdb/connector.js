// A Sluice destination connector for a CouchDB-style document database, in JavaScript.
//
// It writes a batch with the bulk document API:
//
//     POST /{db}/_bulk_docs
//     {"docs": [{"_id": "<record key>", ...payload fields}]}
//
// and reads the per-document answer of a 201: `{"id", "ok": true, "rev"}` when the
// document was written, `{"id", "error", "reason"}` when it was not. Answers are matched to
// records by id. A `conflict` (another writer updated the document first) is retried; any
// other document error (`forbidden` from a validation function, among others) rejects the
// record with the error as its code.
//
// Built with componentize-js against the `destination-connector` world in `wit/`: see
// README.md. Like every connector it does no I/O: it only turns batches into requests and
// responses into verdicts.

import { log } from 'sluice:connector/host@0.1.0';

const KNOWN_SETTINGS = ['db', 'max_batch_records', 'max_batch_bytes'];

// Members CouchDB reserves for itself; a document may carry only these.
const SPECIAL_MEMBERS = ['_id', '_rev', '_deleted', '_attachments', '_conflicts'];

// A `_bulk_docs` answer is about a hundred bytes a document: a body larger than this is not
// an answer to a batch, and decoding it would spend the call's time and memory for nothing.
const MAX_BODY_BYTES = 4 * 1024 * 1024;

// Database names: a lower-case letter, then lower-case letters, digits and _$()+-/.
const DB_NAME = /^[a-z][a-z0-9_$()+/-]*$/;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// What `configure` decided for this instance; each worker has its own instance.
let config = null;

function failure(code, message, fields = []) {
  return { code, message, fields };
}

// A `result` export's error: componentize-js takes the thrown object's `payload`.
class Refusal {
  constructor(failure) {
    this.payload = failure;
  }
}

function settingError(key, message) {
  return new Refusal(failure('INVALID_SETTING', `setting \`${key}\`: ${message}`));
}

function wholeNumber(settings, key, fallback, low, high) {
  const raw = (settings.get(key) ?? '').trim();
  if (raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw) || BigInt(raw) < low || BigInt(raw) > high) {
    throw settingError(key, `expected a whole number from ${low} to ${high}, got ${JSON.stringify(raw)}`);
  }
  return BigInt(raw);
}

function parseSettings(pairs) {
  const settings = new Map();
  for (const [key, value] of pairs) {
    if (!KNOWN_SETTINGS.includes(key)) {
      throw settingError(key, `unknown setting; known settings are: ${KNOWN_SETTINGS.join(', ')}`);
    }
    if (settings.has(key)) throw settingError(key, 'given more than once');
    settings.set(key, value);
  }
  const db = (settings.get('db') ?? '').trim();
  if (db === '') throw new Refusal(failure('MISSING_SETTING', 'setting `db` is required'));
  if (!DB_NAME.test(db)) {
    throw settingError('db', `${JSON.stringify(db)} is not a CouchDB database name`);
  }
  return {
    // `/` is legal in a database name and must be escaped in the path.
    path: `/${encodeURIComponent(db)}/_bulk_docs`,
    maxBatchRecords: Number(wholeNumber(settings, 'max_batch_records', 1000n, 1n, 100000n)),
    maxBatchBytes: wholeNumber(settings, 'max_batch_bytes', 8000000n, 1n, 2n ** 64n - 1n),
  };
}

// The parsed payload, or the failure that says why it cannot be a document.
function documentOf(record) {
  if (record.key === '') return [null, failure('INVALID_ID', 'the record key is empty', ['_id'])];
  if (record.key.startsWith('_')) {
    return [null, failure('INVALID_ID', `document ids may not start with an underscore: ${JSON.stringify(record.key)}`, ['_id'])];
  }
  let doc;
  try {
    doc = JSON.parse(record.payload);
  } catch (e) {
    return [null, failure('INVALID_JSON', `payload is not valid JSON: ${e.message}`)];
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return [null, failure('INVALID_JSON', 'payload is not a JSON object')];
  }
  const bad = Object.keys(doc).find((k) => k.startsWith('_') && !SPECIAL_MEMBERS.includes(k));
  if (bad !== undefined) {
    return [null, failure('doc_validation', `bad special document member: ${bad}`, [bad])];
  }
  return [doc, null];
}

// The document's JSON. The payload's own text is kept when it has no `_id`, so that field
// order and the precision of large numbers survive exactly as the source gave them.
function documentText(record, doc) {
  const id = `{"_id":${JSON.stringify(record.key)}`;
  if ('_id' in doc) {
    const { _id, ...rest } = doc;
    const fields = JSON.stringify(rest);
    return fields === '{}' ? `${id}}` : `${id},${fields.slice(1)}`;
  }
  const text = record.payload.trim();
  return Object.keys(doc).length === 0 ? `${id}}` : `${id},${text.slice(1)}`;
}

function notConfigured() {
  return failure('NOT_CONFIGURED', 'configure has not succeeded on this instance');
}

export const destination = {
  configure(settings) {
    config = parseSettings(settings);
    log('debug', `configured: ${config.path}`);
    return { maxBatchRecords: config.maxBatchRecords, maxBatchBytes: config.maxBatchBytes };
  },

  precheck(batch) {
    return batch.map((record) => {
      const [, problem] = documentOf(record);
      return problem === null ? undefined : { tag: 'rejected', val: problem };
    });
  },

  buildRequest(batch) {
    if (config === null) throw new Refusal(notConfigured());
    const docs = batch.map((record) => {
      const [doc, problem] = documentOf(record);
      if (problem !== null) {
        throw new Refusal(failure(problem.code, `record ${JSON.stringify(record.key)}: ${problem.message}`, problem.fields));
      }
      return documentText(record, doc);
    });
    return {
      method: 'POST',
      url: config.path,
      headers: [['content-type', 'application/json']],
      body: encoder.encode(`{"docs":[${docs.join(',')}]}`),
    };
  },

  classify(keys, response) {
    if (config === null) return { tag: 'fatal', val: notConfigured() };
    // The contract forbids trapping on any response: an unforeseen error here becomes a
    // transient failure that names it, and the host retries the batch.
    try {
      return classify(keys, response);
    } catch (e) {
      return { tag: 'transient', val: failure('CONNECTOR_ERROR', `could not read the response: ${e}`) };
    }
  },
};

function classify(keys, response) {
  const { status, body } = response;
  if (status === 200 || status === 201 || status === 202) return perDocument(keys, body);
  if (status === 401) return { tag: 'auth-expired', val: errorFromBody(status, body) };
  if (status === 429 || status === 503) return { tag: 'rate-limited', val: retryAfter(response.headers) };
  if (status === 400 || status === 413 || status === 417) {
    // The whole request was refused for something in it (a document too large, a bad
    // member): the host bisects the batch to find it.
    return { tag: 'batch-rejected', val: errorFromBody(status, body) };
  }
  if (status === 408 || status >= 500) return { tag: 'transient', val: errorFromBody(status, body) };
  const f = errorFromBody(status, body);
  if (status === 404) f.message = `the database does not exist (check \`db\`): ${f.message}`;
  return { tag: 'fatal', val: f };
}

// The body as JSON, or undefined (empty, too large, not UTF-8, not JSON).
function parseBody(body) {
  if (body.length === 0 || body.length > MAX_BODY_BYTES) return undefined;
  try {
    return JSON.parse(decoder.decode(body));
  } catch {
    return undefined;
  }
}

function snippet(body, limit = 200) {
  const head = new TextDecoder().decode(body.subarray(0, limit * 4)).trim();
  const more = head.length > limit || body.length > limit * 4;
  return head.slice(0, limit) + (more ? '…' : '');
}

function nonBlank(value) {
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}

// CouchDB's error body: {"error": "not_found", "reason": "Database does not exist."}.
function errorFromBody(status, body) {
  const value = parseBody(body);
  const code = nonBlank(value?.error);
  const reason = nonBlank(value?.reason);
  if (code !== undefined) return failure(code, reason ?? code);
  const message = body.length === 0 ? `HTTP ${status} with an empty body` : `HTTP ${status}: ${snippet(body)}`;
  return failure(`HTTP_${status}`, message);
}

const MAX_U64 = 2n ** 64n - 1n;

// Retry-After as delta-seconds or an HTTP-date; undefined when absent or unreadable.
function retryAfter(headers) {
  const header = headers.find(([name]) => name.toLowerCase() === 'retry-after');
  const value = header?.[1].trim();
  if (!value) return undefined;
  if (/^[0-9]+$/.test(value)) {
    const ms = BigInt(value) * 1000n;
    return { tag: 'after-ms', val: ms > MAX_U64 ? MAX_U64 : ms };
  }
  // IMF-fixdate, as HTTP sends it: `Wed, 21 Oct 2026 07:28:00 GMT`.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(value)) return undefined;
  const at = Date.parse(value);
  if (Number.isNaN(at) || at < 0) return undefined;
  return { tag: 'until-unix-ms', val: BigInt(at) };
}

function malformed(message) {
  return { tag: 'transient', val: failure('MALFORMED_RESPONSE', message) };
}

// One outcome per key from a `_bulk_docs` answer, matched by document id.
function perDocument(keys, body) {
  if (body.length > MAX_BODY_BYTES) {
    return malformed(`the response body is ${body.length} bytes, more than a bulk answer can be`);
  }
  const answers = parseBody(body);
  if (!Array.isArray(answers)) return malformed('the response body is not a JSON array');
  const byId = new Map();
  for (const answer of answers) {
    if (answer === null || typeof answer !== 'object' || typeof answer.id !== 'string') {
      return malformed('an answer is not an object with a string `id`');
    }
    // CouchDB answers in order; when an id appears twice in a batch, take its answers in turn.
    if (!byId.has(answer.id)) byId.set(answer.id, []);
    byId.get(answer.id).push(answer);
  }
  const outcomes = keys.map((key) => {
    const answer = byId.get(key)?.shift();
    if (answer === undefined) {
      return { tag: 'retry', val: failure('NO_RESULT', `the response says nothing about ${JSON.stringify(key)}`) };
    }
    if (answer.ok === true) return { tag: 'delivered', val: nonBlank(answer.rev) };
    const code = nonBlank(answer.error) ?? 'unknown_error';
    const f = failure(code, nonBlank(answer.reason) ?? code);
    // A conflict means another writer got there first: trying again can succeed.
    return code === 'conflict' ? { tag: 'retry', val: f } : { tag: 'rejected', val: f };
  });
  return { tag: 'per-record', val: outcomes };
}
