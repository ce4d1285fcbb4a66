// BullMQ side of the work-queue peer benchmark.
//
// node bench.mjs --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
//     --concurrency 10 --prefix bench-ab12 [--batch 1000] [--timeout 300] [--keep-completed 1000]
//
// 1. adds N no-op jobs with Queue.addBulk in batches (the add rate);
// 2. forks P worker processes, one BullMQ Worker each with the given concurrency, waits until
//    every one is connected, then lets them all start at once;
// 3. the processing rate is N / (last completion - first claim), over all processes; each
//    worker process reports its CPU time from the start signal to the stop, and the parent
//    reads the server's (INFO cpu) from the start signal to the last completion seen;
// 4. closes everything, deletes every key under the prefix, prints ONE JSON line on stdout
//    (the contract described at the top of ../run.py) and exits; 0 when the run completed.
//
// A run never lasts longer than --timeout seconds: then it stops its workers, cleans up and
// prints a line with "ok": false.

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const QUEUE = 'noop';
const here = fileURLToPath(import.meta.url);

function parseArgs(argv) {
  const opts = {
    redisUrl: null,
    jobs: 20000,
    processes: 1,
    concurrency: 10,
    prefix: null,
    batch: 1000,
    timeout: 300,
    keepCompleted: 1000,
    keepFailed: 5000,
    child: false,
  };
  const names = {
    '--redis-url': ['redisUrl', String],
    '--jobs': ['jobs', Number],
    '--processes': ['processes', Number],
    '--concurrency': ['concurrency', Number],
    '--prefix': ['prefix', String],
    '--batch': ['batch', Number],
    '--timeout': ['timeout', Number],
    '--keep-completed': ['keepCompleted', Number],
    '--keep-failed': ['keepFailed', Number],
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--child') {
      opts.child = true;
      continue;
    }
    const spec = names[argv[i]];
    if (!spec || i + 1 >= argv.length) throw new Error(`bad argument: ${argv[i]}`);
    opts[spec[0]] = spec[1](argv[++i]);
  }
  if (!opts.redisUrl || !opts.prefix) throw new Error('--redis-url and --prefix are required');
  for (const key of ['jobs', 'processes', 'concurrency', 'batch', 'timeout']) {
    if (!Number.isInteger(opts[key]) || opts[key] < 1) throw new Error(`--${key} must be >= 1`);
  }
  if (!/^[A-Za-z0-9_.-]+$/.test(opts.prefix)) throw new Error('--prefix: letters, digits, _ . -');
  return opts;
}

function connectionOptions(redisUrl) {
  const url = new URL(redisUrl);
  if (url.protocol !== 'redis:') throw new Error('only redis:// URLs are supported');
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 6379,
    db,
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    maxRetriesPerRequest: null, // what BullMQ requires for Worker connections
  };
}

const now = () => performance.timeOrigin + performance.now(); // ms, comparable across processes
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// a worker process whose parent is gone has no one to report to
function tell(msg, then) {
  if (process.connected) process.send(msg, then);
  else if (then) then();
}

// ---------------------------------------------------------------- worker process
async function child(opts) {
  const connection = connectionOptions(opts.redisUrl);
  let first = null;
  let last = null;
  let done = 0;
  let failed = 0;
  let cpuAtStart = null; // process.cpuUsage() at the start signal
  let cpu = null; // CPU seconds from the start signal to the stop
  const worker = new Worker(
    QUEUE,
    async () => {
      if (first === null) first = now();
    },
    {
      connection,
      prefix: opts.prefix,
      concurrency: opts.concurrency,
      autorun: false,
      removeOnComplete: { count: opts.keepCompleted },
      removeOnFail: { count: opts.keepFailed },
    },
  );
  worker.on('completed', () => {
    done++;
    last = now();
  });
  worker.on('failed', () => {
    failed++;
  });
  worker.on('error', (err) => {
    tell({ type: 'error', message: String(err) });
  });
  let reported = 0;
  const ticker = setInterval(() => {
    if (done + failed !== reported) {
      reported = done + failed;
      tell({ type: 'progress', finished: reported });
    }
  }, 20);
  process.on('disconnect', () => process.exit(3)); // the parent went away
  process.on('message', async (msg) => {
    if (msg.type === 'go') {
      cpuAtStart = process.cpuUsage();
      worker.run().catch((err) => tell({ type: 'error', message: String(err) }));
    } else if (msg.type === 'stop') {
      clearInterval(ticker);
      if (cpuAtStart !== null) {
        const used = process.cpuUsage(cpuAtStart);
        cpu = (used.user + used.system) / 1e6;
      }
      await worker.close();
      tell({ type: 'result', first, last, done, failed, cpu }, () => process.exit(0));
    }
  });
  await worker.waitUntilReady();
  tell({ type: 'ready' });
}

// ---------------------------------------------------------------- parent process
async function deleteKeys(client, prefix) {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) deleted += await client.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

// the server's CPU time so far (user + system), from the reply of INFO cpu
function serverCpu(info) {
  const field = (name) => Number(new RegExp(`${name}:(\\S+)`).exec(info)[1]);
  return field('used_cpu_user') + field('used_cpu_sys');
}

function versions(info) {
  const pkg = (name) =>
    JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url)))
      .version;
  const redis = /redis_version:(\S+)/.exec(info);
  return {
    bullmq: pkg('bullmq'),
    ioredis: pkg('ioredis'),
    node: process.version,
    redis: redis?.[1] ?? null,
  };
}

async function parent(opts) {
  const started = now();
  const deadline = started + opts.timeout * 1000;
  const admin = new IORedis(opts.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: false });
  const record = {
    peer: 'bullmq',
    ok: false,
    jobs: opts.jobs,
    processes: opts.processes,
    concurrency: opts.concurrency,
    add_seconds: null,
    add_rate: null,
    process_seconds: null,
    process_rate: null,
    completed: 0,
    failed: 0,
    worker_cpu_seconds: null,
    redis_cpu_seconds: null,
    versions: versions(await admin.info('server')),
    settings: {
      prefix: opts.prefix,
      add: `Queue.addBulk, batches of ${opts.batch}`,
      removeOnComplete: { count: opts.keepCompleted },
      removeOnFail: { count: opts.keepFailed },
      job_options: 'BullMQ defaults (attempts 1, no backoff, no delay, no priority)',
      handler: 'async () => {} (no-op)',
    },
    error: null,
  };
  const children = [];
  const state = { aborted: false };
  let timer = null;
  const running = run(opts, record, children, state);
  try {
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${opts.timeout} s`)),
        Math.max(0, deadline - now()),
      );
    });
    await Promise.race([running, timeout]);
    record.ok = record.completed === opts.jobs && record.failed === 0;
    if (!record.ok && !record.error) {
      record.error = `completed ${record.completed} of ${opts.jobs}, failed ${record.failed}`;
    }
  } catch (err) {
    record.error = String(err?.message ?? err);
  } finally {
    clearTimeout(timer);
    state.aborted = true; // run() stops at its next step and forks nothing more
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await Promise.race([running.catch(() => {}), sleep(5000)]);
    try {
      record.settings.keys_deleted = await deleteKeys(admin, opts.prefix);
    } catch (err) {
      record.error = `${record.error ?? ''}; cleanup failed: ${err}`;
    }
    admin.disconnect();
  }
  process.stdout.write(`${JSON.stringify(record)}\n`);
  process.exit(record.ok ? 0 : 1);
}

async function run(opts, record, children, state) {
  const check = () => {
    if (state.aborted) throw new Error('aborted');
  };
  const connection = connectionOptions(opts.redisUrl);
  const queue = new Queue(QUEUE, { connection, prefix: opts.prefix });
  await queue.waitUntilReady();

  // 1. add
  const addStart = now();
  for (let i = 0; i < opts.jobs; i += opts.batch) {
    const n = Math.min(opts.batch, opts.jobs - i);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: {} })));
    check();
  }
  const addEnd = now();
  record.add_seconds = (addEnd - addStart) / 1000;
  record.add_rate = opts.jobs / record.add_seconds;
  await queue.close();

  // 2. workers: fork, wait until all are connected, then start them together
  const progress = new Array(opts.processes).fill(0);
  const results = new Array(opts.processes).fill(null);
  const closed = new Array(opts.processes).fill(false);
  let readyCount = 0;
  let notify = () => {};
  const changed = () => new Promise((resolve) => (notify = resolve));
  const args = [
    '--child', '--redis-url', opts.redisUrl, '--prefix', opts.prefix,
    '--concurrency', String(opts.concurrency), '--keep-completed', String(opts.keepCompleted),
    '--keep-failed', String(opts.keepFailed),
  ];
  for (let i = 0; i < opts.processes; i++) {
    check();
    const c = fork(here, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    children.push(c);
    c.on('message', (msg) => {
      if (msg.type === 'ready') readyCount++;
      else if (msg.type === 'progress') progress[i] = msg.finished;
      else if (msg.type === 'result') results[i] = msg;
      else if (msg.type === 'error') process.stderr.write(`bullmq worker ${i}: ${msg.message}\n`);
      notify();
    });
    c.on('close', (code, signal) => {
      closed[i] = true;
      if (results[i] === null) {
        record.error ??= `worker process ${i} exited early (${signal ?? code})`;
      }
      notify();
    });
  }
  const ended = () => closed.some((gone, i) => gone && results[i] === null);
  while (readyCount < opts.processes && !ended()) await changed();
  if (ended()) throw new Error(record.error);
  const admin = new IORedis(opts.redisUrl, { maxRetriesPerRequest: 1 });
  const cpuBefore = serverCpu(await admin.info('cpu'));
  for (const c of children) c.send({ type: 'go' });

  // 3. wait until N jobs are finished (completed or failed), then stop the workers and collect their clocks
  const sum = () => progress.reduce((a, b) => a + b, 0);
  while (sum() < opts.jobs && !ended()) await changed();
  record.redis_cpu_seconds = serverCpu(await admin.info('cpu')) - cpuBefore;
  admin.disconnect();
  children.forEach((c, i) => closed[i] || c.send({ type: 'stop' }));
  while (results.some((r) => r === null) && !ended()) await changed();
  if (ended()) throw new Error(record.error);

  const firsts = results.map((r) => r.first).filter((t) => t !== null);
  const lasts = results.map((r) => r.last).filter((t) => t !== null);
  record.completed = results.reduce((a, r) => a + r.done, 0);
  record.failed = results.reduce((a, r) => a + r.failed, 0);
  record.per_process = results.map((r) => r.done);
  if (results.every((r) => r.cpu !== null)) {
    record.worker_cpu_seconds = results.reduce((a, r) => a + r.cpu, 0);
  }
  if (firsts.length && lasts.length) {
    record.process_seconds = (Math.max(...lasts) - Math.min(...firsts)) / 1000;
    record.process_rate = record.completed / record.process_seconds;
  }
}

const opts = parseArgs(process.argv.slice(2));
if (opts.child) {
  child(opts).catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(2);
  });
} else {
  parent(opts).catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(2);
  });
}
