#!/usr/bin/env python3
"""Runs every shell example of README.md and compares the output it shows.

    python3 tests/readme/run.py [--build build] [--repo .] [--only LINE[,LINE...]] [-v] [README.md]

Part of `make test` (`make readme` alone). Exit status 0 when every block
ran and every output shown matched, 1 otherwise; the last line is
"readme: N passed, N failed, N skipped (blocks; C outputs compared, T s)".

The conventions (README.md's "Development" section says the same):

* Every fenced ```sh block runs. A block that cannot run here has
  `<!-- readme-test: skip: REASON -->` on the line before its fence; the
  reason is printed. A non-sh block preceded by
  `<!-- readme-test: file NAME -->` is written to NAME in the work
  directory before the section runs (a source file the next block builds).
* Blocks run in order, one bash process per `## ` section, so a variable
  set in one block (ID=...) is there in the next block of that section;
  sections do not share variables.
* Expected output: the `# ` lines directly under a command (no blank line
  between) are what that one command prints on stdout (`#` alone: an
  empty line). A `# ` line after a blank line or at the top of a block is
  an ordinary comment. A command without such lines is run, not compared.
* Comparison, after normalising both sides: all whitespace is removed
  (the README wraps long JSON over several lines); `...` in the expected
  text matches anything (also nothing); timestamps (2026-11-22T07:03:32.262Z)
  become <time>; ids (26 characters of [0-9a-z], jobs and objects) become
  <id>; the values of JSON members that are timings or vary by machine
  (keys ending in _seconds, _ms or _s, "throughput", "pid", "rss..."/"pss...")
  become <num>. The rest must match exactly.
* A command that fails (bash's ERR trap: a non-zero status outside a
  condition, including `ID=$(curl -sf ... | jq -er .id)`) fails the block.
* Environment: the work directory is a fresh temporary directory holding
  symlinks to the repository's top-level files (so `build/batchd`, `make`,
  `$PWD/build/...` work) and nothing else; TMPDIR points inside it. A
  batchd started for the purpose serves `127.0.0.1:8080` with data in
  `./data` (as `make run` does): every `127.0.0.1:80NN` / `localhost:80NN`
  in a command is rewritten to a free port, one per NN, so an example that
  starts its own batchd on 8081 gets a port of its own. BATCHD_* variables
  of the caller are removed. Each section has SECTION_TIMEOUT seconds;
  whatever it left running (its session) is stopped afterwards.

Failures name the README line of the command, the expected and the actual
output (normalised and as printed), and the command's stderr.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SECTION_TIMEOUT = 180
DOC = 'README.md'     # the file's name in messages (main() sets it)
SKIP_RE = re.compile(r'^<!--\s*readme-test:\s*skip:\s*(.*?)\s*-->\s*$')
FILE_RE = re.compile(r'^<!--\s*readme-test:\s*file\s+(\S+)\s*-->\s*$')
MARK_RE = re.compile(r'^<!--\s*readme-test:')
PORT_RE = re.compile(r'\b(?:127\.0\.0\.1|localhost):(80\d\d)\b')


class Step:
    """One logical command of a block and the output shown under it."""

    def __init__(self, line):
        self.line = line          # README line of its first line
        self.cmd = []             # its lines (continuations included)
        self.expect = []          # (README line, text without "# ")


class Block:
    def __init__(self, line, lang, section):
        self.line = line          # README line of the opening fence
        self.lang = lang
        self.section = section
        self.body = []            # (README line, text)
        self.skip = None          # reason, or None
        self.file = None          # for a non-sh block: where to write it
        self.steps = []


def parse_readme(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    blocks, section, i, errors = [], '(top)', 0, []
    while i < len(lines):
        text = lines[i]
        if text.startswith('## '):
            section = text[3:].strip()
        m = re.match(r'^```(\S*)\s*$', text)
        if m and i + 1 < len(lines):
            b = Block(i + 1, m.group(1), section)
            prev = lines[i - 1] if i > 0 else ''
            sm, fm = SKIP_RE.match(prev), FILE_RE.match(prev)
            if sm:
                b.skip = sm.group(1) or 'no reason given'
            elif fm:
                b.file = fm.group(1)
            elif MARK_RE.match(prev):
                errors.append('%s:%d: a readme-test marker this harness does not know: %s'
                              % (DOC, i, prev))
            i += 1
            while i < len(lines) and not re.match(r'^```\s*$', lines[i]):
                b.body.append((i + 1, lines[i]))
                i += 1
            blocks.append(b)
        i += 1
    return blocks, errors


def quotes_open(text):
    """True when text leaves a ' or " quote open (a command that goes on)."""
    q = None
    k = 0
    while k < len(text):
        c = text[k]
        if q is None:
            if c == '\\':
                k += 1
            elif c in '\'"':
                q = c
            elif c == '#' and (k == 0 or text[k - 1] in ' \t'):
                break
        elif q == '"' and c == '\\':
            k += 1
        elif c == q:
            q = None
        k += 1
    return q is not None


def split_steps(block):
    steps, cur, cont, prev_kind = [], None, False, 'blank'
    for n, text in block.body:
        if cont:
            cur.cmd.append((n, text))
            cont = text.endswith('\\') or quotes_open('\n'.join(t for _, t in cur.cmd))
            prev_kind = 'cmd'
            continue
        stripped = text.strip()
        if not stripped:
            prev_kind = 'blank'
            continue
        if text.startswith('#'):
            if prev_kind in ('cmd', 'expect') and cur is not None:
                cur.expect.append((n, text[2:] if text.startswith('# ') else text[1:]))
                prev_kind = 'expect'
            else:
                prev_kind = 'comment'
            continue
        cur = Step(n)
        cur.cmd.append((n, text))
        steps.append(cur)
        cont = text.endswith('\\') or quotes_open(text)
        prev_kind = 'cmd'
    return steps


# ---------------------------------------------------------------- normalising

TIME_RE = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z')
ID_RE = re.compile(r'(?<![0-9A-Za-z])[0-9a-z]{26}(?![0-9A-Za-z])')
NUM = r'-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?'
VARY_RE = re.compile(r'("(?:[a-z_]*_seconds|[a-z_]*_ms|[a-z_]*_s|throughput|pid|rss[a-z_]*|pss[a-z_]*)":)'
                     + NUM)
WS_RE = re.compile(r'\s+')


def normalise(text):
    text = TIME_RE.sub('<time>', text)
    text = ID_RE.sub('<id>', text)
    text = VARY_RE.sub(r'\1<num>', text)
    return WS_RE.sub('', text)


def matches(expected, actual):
    parts = normalise(expected).split('...')
    pattern = '.*?'.join(re.escape(p) for p in parts)
    return re.fullmatch(pattern, normalise(actual), re.S) is not None


# ---------------------------------------------------------------- running


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % port, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def session_pids(sid):
    """The processes of session sid (a session this harness created)."""
    pids = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:        # field 6 of stat: the session id
            pids.append(int(d))
    return pids


def stop_session(sid, timeout=15):
    """SIGTERM to every process of the session this harness started with
    start_new_session (a process group is not enough: `timeout`, which
    `make test` uses, puts its child in a group of its own), then SIGKILL
    to whatever is left after `timeout` seconds."""
    def signal_all(sig):
        left = session_pids(sid)
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return left
    if not signal_all(signal.SIGTERM):
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not session_pids(sid):
            return
        time.sleep(0.1)
    signal_all(signal.SIGKILL)


def make_workdir(repo, build):
    work = tempfile.mkdtemp(prefix='batchd-readme.')
    for name in os.listdir(repo):
        if name in ('build', 'data', '.git'):
            continue
        os.symlink(os.path.join(repo, name), os.path.join(work, name))
    os.symlink(os.path.abspath(build), os.path.join(work, 'build'))
    os.mkdir(os.path.join(work, 'tmp'))
    return work


def script_for(blocks, rt, ports):
    """The bash script of one section, and a map script line -> README line."""
    out, where = [], {}

    def emit(text, readme_line=None):
        out.append(text)
        if readme_line is not None:
            where[len(out)] = readme_line

    emit('set -E')
    emit('__rt_step=0')
    emit('trap \'__rt_rc=$?; echo "$LINENO $__rt_rc" >> "%s/err.$__rt_step"\' ERR' % rt)
    for b in blocks:
        if b.file:
            continue
        for k, st in enumerate(b.steps):
            sid = '%d' % st.line
            emit('__rt_step=%s' % sid)
            emit('{')
            for n, text in st.cmd:
                emit(PORT_RE.sub(lambda m: '127.0.0.1:%d' % ports[m.group(1)], text), n)
            emit('} > "%s/out.%s" 2> "%s/stderr.%s"' % (rt, sid, rt, sid))
    return '\n'.join(out) + '\n', where


def run_section(name, blocks, work, ports, env, verbose):
    """Runs one section's blocks; returns a list of failure texts and the
    number of outputs compared."""
    rt = tempfile.mkdtemp(prefix='rt.', dir=os.path.join(work, 'tmp'))
    for b in blocks:
        if b.file:
            with open(os.path.join(work, b.file), 'w') as f:
                f.write('\n'.join(t for _, t in b.body) + '\n')
    script, where = script_for(blocks, rt, ports)
    path = os.path.join(rt, 'section.sh')
    with open(path, 'w') as f:
        f.write(script)
    if verbose:
        print('--- section %s: %s' % (name, path))
    proc = subprocess.Popen(['bash', path], cwd=work, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    timed_out = False
    try:
        proc.communicate(timeout=SECTION_TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
    stop_session(proc.pid)
    proc.wait()

    failures, compared = [], 0

    def read(kind, sid):
        p = os.path.join(rt, '%s.%s' % (kind, sid))
        return open(p, encoding='utf-8', errors='replace').read() if os.path.exists(p) else None

    for b in blocks:
        for st in b.steps:
            sid = '%d' % st.line
            out, err, trap = read('out', sid), read('stderr', sid), read('err', sid)
            cmd = '\n'.join(t for _, t in st.cmd)
            head = '%s:%d (block at line %d, section "%s"):\n    %s' % (
                DOC, st.line, b.line, name, cmd.replace('\n', '\n    '))
            if out is None:
                why = 'timed out after %d s before this command' % SECTION_TIMEOUT if timed_out \
                    else 'not run (the section stopped before it)'
                failures.append('%s\n  %s' % (head, why))
                continue
            problems = []
            if trap:
                lines = sorted({int(x.split()[0]) for x in trap.split('\n') if x.strip()})
                rcs = sorted({x.split()[1] for x in trap.split('\n') if x.strip()})
                problems.append('a command failed (exit status %s) at %s line %s' % (
                    ', '.join(rcs), DOC, ', '.join(str(where.get(x, '?')) for x in lines)))
            if st.expect:
                compared += 1
                expected = '\n'.join(t for _, t in st.expect)
                if not matches(expected, out):
                    problems.append('output differs from %s lines %d-%d\n'
                                    '  expected: %s\n  got:      %s\n'
                                    '  (normalised)\n  expected: %s\n  got:      %s' % (
                                        DOC, st.expect[0][0], st.expect[-1][0],
                                        expected.replace('\n', '\n            '),
                                        out.rstrip('\n').replace('\n', '\n            ')[:3000],
                                        normalise(expected), normalise(out)[:3000]))
            if problems:
                tail = (err or '').strip().split('\n')[-8:]
                failures.append('%s\n  %s%s' % (
                    head, '\n  '.join(problems),
                    ('\n  stderr:\n    ' + '\n    '.join(tail)) if any(tail) else ''))
    if not failures and not verbose:
        shutil.rmtree(rt, ignore_errors=True)
    return failures, compared


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('readme', nargs='?', default='README.md')
    ap.add_argument('--build', default='build', help='the build directory (build/batchd in it)')
    ap.add_argument('--only', default='', help='run only the sections holding these README lines')
    ap.add_argument('-v', '--verbose', action='store_true', help='print each section, keep its files')
    ap.add_argument('--no-keep', action='store_true', help='remove the work directory even after a failure')
    ap.add_argument('--repo', default='.', help='the checkout whose files the examples see')
    a = ap.parse_args()
    global DOC
    DOC = os.path.basename(a.readme)
    repo = os.path.abspath(a.repo)
    started = time.time()
    batchd = os.path.join(os.path.abspath(a.build), 'batchd')
    if not os.access(batchd, os.X_OK):
        print('readme: %s is not built (make first)' % batchd)
        return 1
    for tool in ('bash', 'curl', 'jq'):
        if shutil.which(tool) is None:
            print('readme: %s is not installed (sh scripts/deps.sh readme)' % tool)
            return 1

    blocks, errors = parse_readme(a.readme)
    for e in errors:
        print('FAIL - ' + e)
    sh = [b for b in blocks if b.lang == 'sh' or b.file]
    for b in sh:
        b.steps = split_steps(b) if b.lang == 'sh' else []
    only = {int(x) for x in a.only.split(',') if x.strip()}

    work = make_workdir(repo, a.build)
    # the caller's settings must not reach the examples' batchd, nor an
    # outer make's jobserver their `make`
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('BATCHD_') and k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL')}
    env['TMPDIR'] = os.path.join(work, 'tmp')
    env['PWD'] = work
    all_text = '\n'.join(t for b in sh if not b.skip for _, t in b.body)
    ports = {nn: free_port() for nn in sorted(set(PORT_RE.findall(all_text)) | {'8080'})}

    server = subprocess.Popen([batchd, '--listen', '127.0.0.1:%d' % ports['8080'],
                               '--data-dir', os.path.join(work, 'data')],
                              cwd=work, env=env, stdin=subprocess.DEVNULL,
                              stdout=open(os.path.join(work, 'tmp', 'batchd.log'), 'w'),
                              stderr=subprocess.STDOUT, start_new_session=True)
    failures, n_run, n_skip, n_failed, compared = list(errors), 0, 0, 0, 0
    try:
        if not wait_ready(ports['8080'], server):
            print('readme: the batchd for 127.0.0.1:8080 did not become ready; its log:')
            print(open(os.path.join(work, 'tmp', 'batchd.log')).read()[-3000:])
            return 1
        sections = []
        for b in sh:
            if b.skip:
                n_skip += 1
                print('SKIP - %s:%d (%s): %s' % (DOC, b.line, b.section, b.skip))
                continue
            if not sections or sections[-1][0] != b.section:
                sections.append((b.section, []))
            sections[-1][1].append(b)
        for name, bl in sections:
            if only and not any(b.line <= x <= (b.body[-1][0] if b.body else b.line) + 1
                                for b in bl for x in only):
                continue
            runnable = [b for b in bl if b.lang == 'sh']
            t0 = time.time()
            fails, comp = run_section(name, bl, work, ports, env, a.verbose)
            compared += comp
            n_run += len(runnable)
            bad_blocks = {int(f.split('block at line ')[1].split(',')[0]) for f in fails
                          if 'block at line ' in f}
            n_failed += len(bad_blocks)
            for b in runnable:
                print('%s - %s:%d (%s, %d command%s)' % (
                    'FAIL' if b.line in bad_blocks else 'ok', DOC, b.line, name, len(b.steps),
                    '' if len(b.steps) == 1 else 's'))
            for f in fails:
                print('FAIL - ' + f)
            failures += fails
            if a.verbose:
                print('  section %s took %.1f s' % (name, time.time() - t0))
    finally:
        stop_session(server.pid)
        server.wait()
        if a.no_keep or (not failures and not a.verbose):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print('readme: files kept in %s' % work)
    n_failed += len(errors)
    print('readme: %d passed, %d failed, %d skipped (blocks; %d outputs compared, %.0f s)' % (
        n_run - n_failed, n_failed, n_skip, compared, time.time() - started))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
