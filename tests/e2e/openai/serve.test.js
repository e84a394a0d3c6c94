// End-to-end tests of `brisk serve` with the official OpenAI Node client (and plain fetch for
// what the client cannot send: malformed JSON, missing keys, wrong methods).
//
// Environment: BRISK (the binary), BRISK_TESTDATA (../shared/testdata), BRISK_E2E_DIR (scratch).
// The model is a random-weight `brisk synth --preset tiny` with the Phi-3 vocabulary (it carries
// a chat template), so its text is noise: tests check shapes, counts and lifecycle, and compare a
// greedy run with itself, never with expected words.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const OpenAI = require('openai');

const BRISK = process.env.BRISK;
const DATA = process.env.BRISK_TESTDATA;
const DIR = process.env.BRISK_E2E_DIR || fs.mkdtempSync('/tmp/brisk-e2e-');
const KEY = 'sk-test-' + Math.random().toString(36).slice(2);
const CTX = 512;
const MODEL_NAME = 'tiny-phi3';
const T = { timeout: 90_000 };

// Starts `brisk serve` on a free port; resolves when it prints its listening line.
function startServer(extraArgs) {
  const args = ['serve', '-m', path.join(DIR, 'model.gguf'), '--port', '0', '--threads', '2',
                '--model-name', MODEL_NAME, '--max-num-seqs', '16', ...extraArgs];
  const proc = spawn(BRISK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('serve did not start in 60 s:\n' + log)), 60_000);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/serve: listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code }) => reject(new Error(`serve exited (${code}) before listening:\n${log}`)));
  });
  return { proc, ready, exited, log: () => log };
}

let server, base, client;

before(async () => {
  assert.ok(BRISK && DATA, 'BRISK and BRISK_TESTDATA must be set');
  execFileSync(BRISK, ['synth', '--preset', 'tiny', '--type', 'q8_0', '--ctx', String(CTX),
                       '--vocab-from', path.join(DATA, 'tokenizer/ggml-vocab-phi-3.gguf'),
                       '-o', path.join(DIR, 'model.gguf'), '-t', '2'], { stdio: 'inherit' });
  server = startServer(['--api-key', KEY]);
  base = await server.ready;
  client = new OpenAI({ baseURL: base + '/v1', apiKey: KEY, maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  if (server && server.proc.exitCode === null) {
    server.proc.kill('SIGTERM');
    const { code } = await server.exited;
    // A clean exit after everything above (sanitizer builds report leaks and errors here).
    assert.equal(code, 0, server.log());
  }
});

async function metrics() {
  const r = await fetch(base + '/metrics', { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 200);
  const text = await r.text();
  const value = (name) => {
    const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
    assert.ok(m, `metric ${name} missing`);
    return Number(m[1]);
  };
  return { text, value };
}

const greedy = { temperature: 0, seed: 7 };

test('GET /v1/models lists the model', T, async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, MODEL_NAME);
  assert.equal(list.data[0].object, 'model');
  const m = await client.models.retrieve(MODEL_NAME);
  assert.equal(m.id, MODEL_NAME);
});

test('completion, not streamed: shape and usage', T, async () => {
  const r = await client.completions.create({ model: MODEL_NAME, prompt: 'Once upon a time',
                                              max_tokens: 8, ignore_eos: true, ...greedy });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.created, 'number');
  assert.equal(r.model, MODEL_NAME);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(typeof r.choices[0].text, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.choices[0].logprobs, null);
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens >= 4);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
});

test('token-id prompt: usage counts exactly; the prefix cache is reported', T, async () => {
  const prompt = Array.from({ length: 37 }, (_, i) => 500 + i);
  const req = { model: MODEL_NAME, prompt, max_tokens: 12, ignore_eos: true, ...greedy };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.equal(a.usage.prompt_tokens, 37);
  assert.equal(a.usage.completion_tokens, 12);
  // The second run found the prompt in the prefix cache (all but the last, partial block).
  assert.ok(b.usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(b.usage));
});

test('completion, streamed with include_usage', T, async () => {
  const stream = await client.completions.create({
    model: MODEL_NAME, prompt: 'The engine', max_tokens: 10, ignore_eos: true, stream: true,
    stream_options: { include_usage: true }, ...greedy });
  let text = '', finish = null, usage = null, id = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    id = id || chunk.id;
    assert.equal(chunk.id, id, 'one id for the whole stream');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.match(id, /^cmpl-/);
  assert.equal(finish, 'length');
  assert.ok(usage, 'a usage chunk');
  assert.equal(usage.completion_tokens, 10);
  assert.equal(typeof text, 'string');
});

test('chat, not streamed', T, async () => {
  const r = await client.chat.completions.create({
    model: MODEL_NAME, max_completion_tokens: 6, ignore_eos: true,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
    ...greedy });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 6);
  assert.ok(r.usage.prompt_tokens > 5, 'the template adds its markers');
});

test('chat, streamed', T, async () => {
  const stream = await client.chat.completions.create({
    model: MODEL_NAME, max_tokens: 6, ignore_eos: true, stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Tell me a story.' }], ...greedy });
  let role = null, content = '', finish = null, usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 6);
  assert.equal(typeof content, 'string');
});

test('n = 2 gives two choices', T, async () => {
  const r = await client.completions.create({ model: MODEL_NAME, prompt: 'Two ways', n: 2,
                                              max_tokens: 5, ignore_eos: true, seed: 3 });
  assert.deepEqual(r.choices.map((c) => c.index).sort(), [0, 1]);
  assert.equal(r.usage.completion_tokens, 10);
  const s = await client.chat.completions.create({
    model: MODEL_NAME, n: 2, max_tokens: 4, ignore_eos: true, stream: true,
    messages: [{ role: 'user', content: 'Hi' }] });
  const finished = new Set();
  for await (const chunk of s) for (const c of chunk.choices) if (c.finish_reason) finished.add(c.index);
  assert.deepEqual([...finished].sort(), [0, 1]);
});

test('stop strings end the text before the stop, with finish_reason stop', T, async () => {
  const req = { model: MODEL_NAME, prompt: 'A stop here', max_tokens: 24, ignore_eos: true,
                ...greedy };
  const free = (await client.completions.create(req)).choices[0].text;
  // A stop string taken from the middle of the greedy text: the same run must stop right there.
  const visible = [...free].map((ch, i) => [ch, i]).filter(([ch]) => ch.trim() !== '');
  assert.ok(visible.length >= 4, `need some visible text, got ${JSON.stringify(free)}`);
  const at = visible[Math.floor(visible.length / 2)][1];
  const stop = free.slice(at, at + 2);
  const r = await client.completions.create({ ...req, stop: [stop, '\u0000never'] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, free.slice(0, free.indexOf(stop)));
  assert.ok(r.usage.completion_tokens < 24);
});

test('logprobs: completions (top 2) and chat (top 3)', T, async () => {
  const r = await client.completions.create({ model: MODEL_NAME, prompt: 'Log', max_tokens: 5,
                                              ignore_eos: true, logprobs: 2, ...greedy });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 5);
  assert.equal(lp.token_logprobs.length, 5);
  assert.equal(lp.top_logprobs.length, 5);
  assert.equal(lp.text_offset.length, 5);
  for (const x of lp.token_logprobs) assert.ok(x <= 0);
  for (const t of lp.top_logprobs) assert.ok(Object.keys(t).length >= 1 && Object.keys(t).length <= 2);

  const c = await client.chat.completions.create({
    model: MODEL_NAME, max_tokens: 4, ignore_eos: true, logprobs: true, top_logprobs: 3,
    messages: [{ role: 'user', content: 'Hi' }], ...greedy });
  const content = c.choices[0].logprobs.content;
  assert.equal(content.length, 4);
  for (const t of content) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 3);
    // Greedy: the chosen token is the most likely one.
    assert.ok(t.logprob >= t.top_logprobs[0].logprob - 1e-4);
  }
});

test('authentication: 401 without or with a wrong key; /health stays open', T, async () => {
  const wrong = new OpenAI({ baseURL: base + '/v1', apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => e.status === 401);
  const r = await fetch(base + '/v1/models');
  assert.equal(r.status, 401);
  const body = await r.json();
  assert.equal(body.error.code, 'invalid_api_key');
  const h = await fetch(base + '/health');
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: 'ok' });
});

test('bad requests: malformed JSON, bad values, unknown model, routes, methods', T, async () => {
  const post = (p, body, type = 'application/json') =>
    fetch(base + p, { method: 'POST', body,
                      headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': type } });
  let r = await post('/v1/completions', '{"prompt": "x", ');
  assert.equal(r.status, 400);
  let e = (await r.json()).error;
  assert.match(e.message, /invalid JSON/);
  assert.equal(e.type, 'invalid_request_error');

  await assert.rejects(client.completions.create({ model: MODEL_NAME, prompt: 'x', temperature: 5 }),
                       (err) => err.status === 400 && /temperature/.test(err.message));
  await assert.rejects(client.completions.create({ model: MODEL_NAME, prompt: ['a', 'b'] }),
                       (err) => err.status === 400 && /one prompt/.test(err.message));
  await assert.rejects(client.completions.create({ model: 'gpt-17', prompt: 'x' }),
                       (err) => err.status === 404 && err.code === 'model_not_found');

  r = await fetch(base + '/v1/nothing', { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 404);
  assert.ok((await r.json()).error.message);
  r = await fetch(base + '/v1/completions', { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 405);
  assert.ok((await r.json()).error.message);
});

test('413: body over --max-body-bytes, prompt longer than the context', T, async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(2 * 1024 * 1024) });
  const r = await fetch(base + '/v1/completions', {
    method: 'POST', body: big,
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' } });
  assert.equal(r.status, 413);
  assert.ok((await r.json()).error.message);
  const prompt = Array.from({ length: CTX + 10 }, (_, i) => 300 + (i % 1000));
  await assert.rejects(client.completions.create({ model: MODEL_NAME, prompt, max_tokens: 1 }),
                       (err) => err.status === 413);
});

test('32 concurrent streams all complete', T, async () => {
  const one = async (i) => {
    const stream = await client.completions.create({
      model: MODEL_NAME, prompt: `Request number ${i}`, max_tokens: 16, ignore_eos: true,
      stream: true, stream_options: { include_usage: true }, seed: i });
    let finish = null, usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) if (c.finish_reason) finish = c.finish_reason;
    }
    return { finish, tokens: usage && usage.completion_tokens };
  };
  const results = await Promise.all(Array.from({ length: 32 }, (_, i) => one(i)));
  for (const r of results) assert.deepEqual(r, { finish: 'length', tokens: 16 });
});

test('a client that aborts mid-stream frees its request', T, async () => {
  const before = await metrics();
  const aborted0 = before.value('brisk_requests_aborted_total');
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: MODEL_NAME, prompt: 'A very long story', max_tokens: 400, ignore_eos: true,
      stream: true }, { signal: controller.signal });
  let chunks = 0, finished = false;
  try {
    for await (const chunk of stream) {
      if (chunk.choices.length && ++chunks === 3) controller.abort();
      if (chunk.choices.some((c) => c.finish_reason)) finished = true;
    }
  } catch (e) {
    assert.match(String(e.name), /Abort/);  // the client may end the loop quietly or throw
  }
  assert.ok(chunks >= 3 && !finished, `aborted after ${chunks} chunks`);
  // The server notices at its next write, cancels, and the engine frees the blocks.
  const deadline = Date.now() + 20_000;
  let m;
  for (;;) {
    m = await metrics();
    if (m.value('brisk_requests_running') === 0 && m.value('brisk_kv_blocks_used') === 0) break;
    assert.ok(Date.now() < deadline, 'request still running after abort:\n' + m.text);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(m.value('brisk_requests_aborted_total') > aborted0);
  assert.ok(m.value('brisk_kv_blocks_total') > 0);
});

test('a client that aborts a non-streamed request frees it', T, async () => {
  const before = await metrics();
  const aborted0 = before.value('brisk_requests_aborted_total');
  const finished0 = before.value('brisk_requests_finished_total');
  const idleBlocks = before.value('brisk_kv_blocks_used');
  const controller = new AbortController();
  // As long as the context allows, in 8 choices: far longer than noticing the abort takes.
  const pending = client.completions.create(
    { model: MODEL_NAME, prompt: [400, 401, 402], max_tokens: CTX - 3, ignore_eos: true, n: 8 },
    { signal: controller.signal });
  const failed = assert.rejects(pending, (e) => /Abort/.test(String(e.name)));
  let m;
  const started = Date.now() + 20_000;
  for (;;) {
    m = await metrics();
    if (m.value('brisk_requests_running') > 0) break;
    assert.ok(Date.now() < started, 'the request never started:\n' + m.text);
    await new Promise((r) => setTimeout(r, 10));
  }
  controller.abort();
  await failed;
  // Nothing is written while the answer is pending: the server notices the closed connection
  // itself, cancels, and the engine frees the blocks.
  const deadline = Date.now() + 20_000;
  for (;;) {
    m = await metrics();
    if (m.value('brisk_requests_running') === 0 &&
        m.value('brisk_kv_blocks_used') === idleBlocks) break;
    assert.ok(Date.now() < deadline, 'request still running after abort:\n' + m.text);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(m.value('brisk_requests_aborted_total'), aborted0 + 1);
  assert.equal(m.value('brisk_requests_finished_total'), finished0);
  // The next non-streamed answer is unchanged for a client that stays.
  const r = await client.completions.create({ model: MODEL_NAME, prompt: 'Still here',
                                              max_tokens: 4, ignore_eos: true, ...greedy });
  assert.equal(r.usage.completion_tokens, 4);
  assert.equal(r.choices[0].finish_reason, 'length');
});

test('n beyond --max-num-seqs is refused: 400 naming n and the limit', T, async () => {
  await assert.rejects(
    client.completions.create({ model: MODEL_NAME, prompt: 'Too many', n: 17, max_tokens: 2 }),
    (e) => e.status === 400 && e.param === 'n' && e.type === 'invalid_request_error' &&
           /at most 16/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model: MODEL_NAME, n: 17, max_tokens: 2,
                                     messages: [{ role: 'user', content: 'Hi' }] }),
    (e) => e.status === 400 && e.param === 'n');
});

test('metrics: Prometheus text with counters and histograms', T, async () => {
  const m = await metrics();
  assert.ok(m.value('brisk_generation_tokens_total') > 0);
  assert.ok(m.value('brisk_prompt_tokens_total') > 0);
  assert.ok(m.value('brisk_requests_finished_total') > 0);
  assert.ok(m.value('brisk_time_to_first_token_seconds_count') > 0);
  assert.match(m.text, /^brisk_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+$/m);
  assert.match(m.text, /^# TYPE brisk_e2e_request_latency_seconds histogram$/m);
});

test('SIGTERM: an in-flight stream completes, new work is refused, exit 0', T, async () => {
  const s = startServer(['--drain-seconds', '60']);
  const url = await s.ready;
  const c = new OpenAI({ baseURL: url + '/v1', apiKey: 'unused', maxRetries: 0 });
  const stream = await c.completions.create({ model: MODEL_NAME, prompt: 'Drain me',
                                              max_tokens: 120, ignore_eos: true, stream: true,
                                              stream_options: { include_usage: true } });
  let signalled = false, finish = null, usage = null, refused = null;
  for await (const chunk of stream) {
    if (!signalled) {
      signalled = true;
      s.proc.kill('SIGTERM');
      // While draining: /health says 503 (or the listener is already gone).
      await new Promise((r) => setTimeout(r, 50));
      refused = await fetch(url + '/health').then((r) => r.status, () => 'closed');
    }
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 120);
  assert.ok(refused === 503 || refused === 'closed', `health while draining: ${refused}`);
  const { code, signal } = await s.exited;
  assert.equal(signal, null);
  assert.equal(code, 0, s.log());
  assert.match(s.log(), /draining/);
});
