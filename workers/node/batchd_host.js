// batchd's minimal Node.js host (docs/coprocess.md): a model written as a
// CommonJS module exporting load(params), init(shared), run(state, item),
// runBatch/run_batch(state, items), fini(state) (all optional but run or
// run_batch).
//
// Written from docs/coprocess.md to show that the protocol is not
// Python-shaped. Node.js cannot fork (it has threads from its first
// instruction) nor receive an fd over a socket, so this host differs from
// the Python one in two documented ways:
//   - it listens on a unix socket in a private directory and says so in
//     LOADED ("accept"); batchd connects there before each FORK, and the
//     host spawns a child process with that connection as its fd 3;
//   - each child loads the module and calls load() itself: load() runs
//     once per worker here, not once (the LOADED description says so).
// Objects are read from the object memfd with a read at their offset (a
// copy: Node has no mmap); they reach the model as typed arrays.
'use strict';

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const T = { LOADED: 0x4c, ERROR: 0x45, FORKED: 0x4b, FORK: 0x46, READY: 0x59,
            RESULT: 0x52, DONE: 0x44, BATCH: 0x42, STOP: 0x53,
            // stateful models (acc_run, acc_export, reduce)
            ACC_BATCH: 0x43, EXPORT: 0x58, DROP: 0x5a, REDUCE: 0x55, VALUE: 0x56 };
const EXIT_FATAL = 2;
const EXIT_INIT = 3;

function frame(type, payload) {
  const body = payload === undefined ? Buffer.alloc(0)
    : Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const h = Buffer.alloc(5);
  h.writeUInt32LE(body.length + 1, 0);
  h[4] = type;
  return Buffer.concat([h, body]);
}

// Calls onFrame(type, payload) for each whole frame read from sock, and
// onEnd() at end of stream.
function frames(sock, onFrame, onEnd) {
  let buf = Buffer.alloc(0);
  sock.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 5) {
      const n = buf.readUInt32LE(0);
      if (n === 0) throw new Error('a frame of length 0');
      if (buf.length < 4 + n) break;
      const type = buf[4];
      const payload = buf.subarray(5, 4 + n);
      buf = buf.subarray(4 + n);
      onFrame(type, payload);
    }
  });
  sock.on('end', onEnd);
  sock.on('error', onEnd);
}

function errorText(e) {
  if (e instanceof Error) return e.message ? `${e.name}: ${e.message}` : e.name;
  return `Error: ${String(e)}`;
}

// 'file:line' of a load failure, when the stack says it.
function where(e) {
  const m = e && e.stack && /\(?(\/[^\s():]+):(\d+)/.exec(e.stack);
  return m ? `${m[1]}:${m[2]}` : '';
}

function loadModule(cfg) {
  return require(path.resolve(cfg.module));
}

const DTYPES = { uint8: Uint8Array, int32: Int32Array, int64: BigInt64Array,
                 float32: Float32Array, float64: Float64Array };

// JSON.parse reviver: an object reference becomes a typed array holding
// the object's bytes (read from the memfd at its offset).
function objectReviver(objFd) {
  return (key, v) => {
    if (v === null || typeof v !== 'object' || !('$object' in v) || !('$offset' in v)) return v;
    const buf = Buffer.alloc(v.$bytes);
    fs.readSync(objFd, buf, 0, v.$bytes, v.$offset);
    const C = DTYPES[v.$dtype];
    const a = new C(buf.buffer, buf.byteOffset, v.$bytes / C.BYTES_PER_ELEMENT);
    a.shape = v.$shape;
    return a;
  };
}

function encode(index, out) {
  const h = Buffer.alloc(5);
  h.writeUInt32LE(index, 0);
  let text;
  try {
    text = JSON.stringify(out, (k, v) => (ArrayBuffer.isView(v) ? Array.from(v, Number) : v));
    if (text === undefined) throw new TypeError('the output is not JSON');
    h[4] = 1;
  } catch (e) {
    text = errorText(e);
    h[4] = 0;
  }
  return frame(T.RESULT, Buffer.concat([h, Buffer.from(text, 'utf8')]));
}

// A VALUE frame (the answer to EXPORT and REDUCE): fn()'s JSON, or its error.
function encodeValue(fn) {
  let ok = 1, text;
  try {
    text = JSON.stringify(fn());
    if (text === undefined) throw new TypeError('the value is not JSON');
  } catch (e) {
    ok = 0;
    text = errorText(e);
  }
  return frame(T.VALUE, Buffer.concat([Buffer.from([ok]), Buffer.from(text, 'utf8')]));
}

function encodeError(index, e) {
  const h = Buffer.alloc(5);
  h.writeUInt32LE(index, 0);
  h[4] = 0;
  return frame(T.RESULT, Buffer.concat([h, Buffer.from(errorText(e), 'utf8')]));
}

// A child: serves one batchd worker on fd 3 (objects on fd 4 if any).
function child(cfg) {
  const sock = new net.Socket({ fd: 3, readable: true, writable: true });
  let mod, state, shared;
  const accs = new Map(); // a stateful model's accumulators: job key -> acc
  try {
    mod = loadModule(cfg);
    shared = mod.load ? mod.load(cfg.params) : null;
    state = mod.init ? mod.init(shared) : shared;
  } catch (e) {
    sock.end(frame(T.ERROR, `init failed: ${errorText(e)} ${where(e)}`), () => process.exit(EXIT_INIT));
    return;
  }
  const reviver = cfg.objects_fd >= 0 ? objectReviver(4) : undefined;
  const runBatch = mod.run_batch || mod.runBatch;
  sock.write(frame(T.READY, JSON.stringify({ pid: process.pid })));
  const stop = () => {
    if (mod.fini) mod.fini(state);
    process.exit(0);
  };
  frames(sock, (type, p) => {
    if (type === T.STOP) return stop();
    if (type === T.EXPORT || type === T.DROP) {
      const key = p.readBigUInt64LE(0).toString();
      const acc = accs.get(key);
      const held = accs.delete(key);
      if (type === T.EXPORT) {
        sock.write(held ? encodeValue(() => mod.acc_export(state, acc))
          : frame(T.VALUE, Buffer.from('\x01null', 'latin1')));
      }
      return;
    }
    if (type === T.REDUCE) {
      sock.write(encodeValue(() => mod.reduce(shared, JSON.parse(p.toString('utf8')))));
      return;
    }
    let key = null;
    if (type === T.ACC_BATCH) {
      key = p.readBigUInt64LE(0).toString();
      p = p.subarray(8);
    } else if (type !== T.BATCH) {
      throw new Error(`unexpected frame ${type}`);
    }
    const n = p.readUInt32LE(0);
    const items = [];
    for (let i = 0, pos = 4; i < n; i++) {
      const len = p.readUInt32LE(pos);
      items.push(JSON.parse(p.toString('utf8', pos + 4, pos + 4 + len), reviver));
      pos += 4 + len;
    }
    const parts = [];
    if (key !== null) {
      // acc_run(state, acc, item) returns [acc, output]; acc is null on
      // the job's first item here; an exception leaves acc as it was.
      items.forEach((item, i) => {
        try {
          const r = mod.acc_run(state, accs.has(key) ? accs.get(key) : null, item);
          if (!Array.isArray(r) || r.length !== 2) throw new TypeError('acc_run must return [acc, output]');
          accs.set(key, r[0]);
          parts.push(encode(i, r[1]));
        } catch (e) {
          parts.push(encodeError(i, e));
        }
      });
    } else if (runBatch) {
      try {
        const outs = Array.from(runBatch(state, items));
        if (outs.length !== n) throw new Error(`run_batch returned ${outs.length} outputs for ${n} items`);
        outs.forEach((o, i) => parts.push(o instanceof Error ? encodeError(i, o) : encode(i, o)));
      } catch (e) {
        for (let i = 0; i < n; i++) parts.push(encodeError(i, e));
      }
    } else {
      items.forEach((item, i) => {
        try {
          parts.push(encode(i, mod.run(state, item)));
        } catch (e) {
          parts.push(encodeError(i, e));
        }
      });
    }
    const done = Buffer.alloc(4);
    done.writeUInt32LE(n, 0);
    parts.push(frame(T.DONE, done));
    sock.write(Buffer.concat(parts));
  }, stop);
}

// The host: loads the module once to report errors at start-up, then
// spawns a child per FORK.
function host(cfg) {
  process.on('SIGINT', () => {});
  const ctl = new net.Socket({ fd: cfg.control_fd, readable: true, writable: true });
  const fatal = (msg) => ctl.end(frame(T.ERROR, msg), () => process.exit(EXIT_FATAL));
  let mod;
  try {
    mod = loadModule(cfg);
    if (typeof mod.acc_run === 'function') {
      const missing = ['acc_export', 'reduce'].filter((h) => typeof mod[h] !== 'function');
      if (missing.length) {
        return fatal(`${cfg.module} exports acc_run but not ${missing.join(' nor ')}: a stateful ` +
                     'model needs acc_run, acc_export and reduce');
      }
    } else if (typeof mod.run !== 'function' && typeof (mod.run_batch || mod.runBatch) !== 'function') {
      return fatal(`${cfg.module} exports neither run(state, item) nor run_batch(state, items)`);
    }
    if (mod.load) mod.load(cfg.params);
  } catch (e) {
    return fatal(`loading ${cfg.module} failed: ${errorText(e)} (${where(e)})`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchd-node-')); // mode 0700
  const sockPath = path.join(dir, 'host.sock');
  const pending = [];
  const children = new Set();
  const server = net.createServer({ pauseOnConnect: true }, (conn) => pending.push(conn));
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  server.listen(sockPath, () => {
    ctl.write(frame(T.LOADED, JSON.stringify({
      pid: process.pid, accept: sockPath, node: process.version,
      stateful: typeof mod.acc_run === 'function',
      description: `Node.js model ${cfg.module} (load() runs in each worker: Node cannot fork)`,
    })));
  });
  const takeFork = (worker, tries) => {
    const conn = pending.shift();
    if (!conn) {
      // batchd connects before it sends FORK; the accept may lag a moment
      if (tries > 1000) return fatal('FORK without a connection');
      return setTimeout(() => takeFork(worker, tries + 1), 5);
    }
    const stdio = ['inherit', 'inherit', 'inherit', conn, cfg.objects_fd >= 0 ? 4 : 'ignore'];
    const c = spawn(process.execPath, [__filename, '--child', JSON.stringify(cfg)], { stdio });
    children.add(c);
    c.on('exit', (code, sig) => {
      children.delete(c);
      if (sig || code) process.stderr.write(`batchd node host: child ${c.pid} ended: ${sig || code}\n`);
    });
    conn.destroy(); // the child has its own copy
    const b = Buffer.alloc(8);
    b.writeUInt32LE(worker, 0);
    b.writeUInt32LE(c.pid, 4);
    ctl.write(frame(T.FORKED, b));
  };
  frames(ctl, (type, p) => {
    if (type !== T.FORK || p.length !== 4) return fatal(`unexpected control frame ${type}`);
    takeFork(p.readUInt32LE(0), 0);
  }, () => {
    // stop: once the children have (they stop when their workers close)
    server.close();
    cleanup();
    const wait = () => (children.size ? setTimeout(wait, 20) : process.exit(0));
    wait();
  });
}

const args = process.argv.slice(2);
if (args[0] === '--child') child(JSON.parse(args[1]));
else host(JSON.parse(args[args.length - 1]));
