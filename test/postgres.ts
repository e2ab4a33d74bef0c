/**
 * A real PostgreSQL server for the tests: started from the machine's own server binaries (`initdb`, `postgres`)
 * in a temporary data folder, listening on 127.0.0.1 only, on a free port, with a random password; stopped and
 * its folder removed afterwards. `IMS_TEST_DATABASE_URL` (a superuser or a role that may `CREATE DATABASE`)
 * uses a running server instead. Nothing is skipped: without binaries and without that variable, starting
 * fails and says how to install them.
 *
 * As root (the tests run as root here and in CI), `initdb` and `postgres` refuse to run, so they run as the
 * `postgres` OS user (created when missing, as Debian's `postgresql` package does), the data folder owned by
 * it: Node's `spawn` drops to that user's uid and gid itself, so the child is the server's own process (no
 * `su` in between) and signals reach it directly. `pause` freezes the postmaster and every backend, `kill`
 * takes them all down at once as a crash would. A watchdog stops the server and removes its folder when the
 * test process ends without stopping it (killed by a timeout, say).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chownSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describeUrl } from '../ims-state-pg.ts';

/** A PostgreSQL server the tests may use. */
export interface TestPostgres {
  /** Connection URL of its administrative database (`postgres`), as a superuser. */
  url: string;
  /** True for the server named by `IMS_TEST_DATABASE_URL` (not started here: no pause, kill or restart). */
  external: boolean;
  /** Stop the server and remove its data folder (an external server: drop the databases `freshDatabase` made). */
  stop(): Promise<void>;
  /** Freeze the server and its backends (SIGSTOP to its process group): connections hang, nothing answers. */
  pause?(): void;
  /** Let a paused server go on. */
  resume?(): void;
  /** Kill the server and its backends with SIGKILL, as a crash would; `restart` brings it back. */
  kill?(): Promise<void>;
  /** Start the server again on the same port and data (after `kill`): it recovers from its WAL. */
  restart?(): Promise<void>;
}

const INSTALL_HINT = 'install the PostgreSQL server (Debian/Ubuntu: `apt-get install -y postgresql`, as .ci/run does; '
  + 'macOS: `brew install postgresql`), or set IMS_TEST_DATABASE_URL=postgres://USER:PASSWORD@127.0.0.1:5432/postgres '
  + 'to use a running server whose user may CREATE DATABASE';

/** Where server binaries are looked for, in order: PATH, Debian's versioned folders (newest first), the source-build default. */
function candidateBinFolders(): string[] {
  const fromPath = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const debian = '/usr/lib/postgresql';
  const versions = existsSync(debian)
    ? readdirSync(debian).filter((name) => /^\d+(\.\d+)?$/.test(name)).sort((a, b) => Number(b) - Number(a)).map((v) => path.join(debian, v, 'bin'))
    : [];
  return [...fromPath, '/usr/local/bin', ...versions, '/usr/local/pgsql/bin'];
}

function isExecutable(file: string): boolean {
  try { accessSync(file, constants.X_OK); return true; } catch { return false; }
}

/** The folder holding both `initdb` and `postgres` (of one version); throws with the install hint when none does. */
export function findServerBinaries(): string {
  const folders = candidateBinFolders();
  const found = folders.find((dir) => isExecutable(path.join(dir, 'initdb')) && isExecutable(path.join(dir, 'postgres')));
  if (!found) {
    throw new Error(`PostgreSQL server binaries (initdb and postgres) not found in PATH, /usr/lib/postgresql/*/bin or /usr/local/pgsql/bin: ${INSTALL_HINT}`);
  }
  return found;
}

/** The uid and gid the server runs as: the current user, or as root the `postgres` OS user (created if missing). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookUp = () => spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  let uid = lookUp();
  if (uid.status !== 0) {
    const made = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/var/lib/postgresql', '--shell', '/bin/sh', 'postgres'], { encoding: 'utf8' });
    if (made.status !== 0) {
      throw new Error(`initdb and postgres refuse to run as root, and the postgres OS user to run them as could not be made (useradd: ${made.stderr || made.error?.message}): `
        + `create it (\`useradd --system --user-group postgres\`) or ${INSTALL_HINT}`);
    }
    uid = lookUp();
  }
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A TCP port free on 127.0.0.1 at the time of asking (the server is started right after; a lost race is retried). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** Run a program to its end as the server's user; throws with its output when it fails. */
function runAs(user: { uid: number; gid: number } | undefined, file: string, args: string[], env: NodeJS.ProcessEnv): void {
  const run = spawnSync(file, args, { env, encoding: 'utf8', ...user, timeout: 120_000 });
  if (run.status !== 0) {
    throw new Error(`${file} ${args.join(' ')} failed (exit ${run.status ?? run.signal}${run.error ? `, ${run.error.message}` : ''}):\n${run.stdout}\n${run.stderr}`);
  }
}

/** Try to connect until the server answers, the process ends, or `timeoutMs` passes. */
async function waitUntilReady(url: string, server: ChildProcess, log: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`postgres exited (${server.exitCode ?? server.signalCode}) before accepting connections:\n${log()}`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      lastError = (error as Error).message;
    } finally {
      await client.end().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`postgres did not accept connections within ${timeoutMs} ms (last: ${lastError}):\n${log()}`);
}

/** The databases made by `freshDatabase`, by the URL of the server's administrative database. */
const madeDatabases = new Map<string, Set<string>>();

/**
 * Start a PostgreSQL server for tests (or use `IMS_TEST_DATABASE_URL`). Throws, saying how to install one,
 * when no server binaries are found: a test that needs PostgreSQL fails rather than passes unseen.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const external = process.env.IMS_TEST_DATABASE_URL;
  if (external) {
    await checkReachable(external);
    return { url: external, external: true, stop: () => dropMadeDatabases(external) };
  }
  const bin = findServerBinaries();
  const user = serverUser();
  const base = mkdtempSync(path.join(os.tmpdir(), 'ims-pg-'));
  try {
    if (user) chownSync(base, user.uid, user.gid);
    const data = path.join(base, 'data');
    const password = randomBytes(18).toString('base64url');
    const passwordFile = path.join(base, 'password');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    if (user) chownSync(passwordFile, user.uid, user.gid);
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', HOME: base, TZ: 'UTC' };
    runAs(user, path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${passwordFile}`, '-E', 'UTF8', '--locale=C', '--no-sync'], env);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        return await runServer({ bin, data, base, port, password, user, env });
      } catch (error) {
        // Another process took the port between the probe and the server's bind: another port.
        if (attempt < 3 && /could not bind|Address already in use/i.test((error as Error).message)) continue;
        throw error;
      }
    }
  } catch (error) {
    rmSync(base, { recursive: true, force: true });
    throw error;
  }
}

interface ServerPlan {
  bin: string; data: string; base: string; port: number; password: string;
  user: { uid: number; gid: number } | undefined; env: NodeJS.ProcessEnv;
}

/** Start `postgres` on the plan's data and port, and the handle that stops, pauses, kills and restarts it. */
async function runServer(plan: ServerPlan): Promise<TestPostgres> {
  const url = `postgres://postgres:${encodeURIComponent(plan.password)}@127.0.0.1:${plan.port}/postgres`;
  let server: ChildProcess;
  // The server logs to a file, not a pipe: a test that blocks its event loop (spawnSync of an instance) would stop
  // draining a pipe, and a backend writing a log line (a deadlock report) would then hang with its locks held.
  const logFile = path.join(plan.base, 'postgres.log');
  const logTail = () => { try { return readFileSync(logFile, 'utf8').slice(-8000); } catch { return '(no log)'; } };
  const launch = async () => {
    const log = openSync(logFile, 'a');
    try {
      // No Unix socket (its default folder may not exist or be writable); no fsync: a test server (a killed server
      // loses nothing, the operating system still has what it wrote).
      server = spawn(path.join(plan.bin, 'postgres'), ['-D', plan.data, '-p', String(plan.port), '-c', 'listen_addresses=127.0.0.1',
        '-c', 'unix_socket_directories=', '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200',
        // Deadlocks between instances are part of what is tested: found in 100 ms rather than 1 s.
        '-c', 'deadlock_timeout=100ms'],
      { env: plan.env, ...plan.user, detached: true, stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    server.unref();
    await waitUntilReady(url, server, logTail);
  };
  const exited = () => server.exitCode !== null || server.signalCode !== null;
  // Each of PostgreSQL's processes leads a session of its own (its children call setsid): they are signalled one by one.
  const signalAll = (signal: NodeJS.Signals, postmasterFirst: boolean) => {
    if (exited()) return;
    const children = childrenOf(server.pid!);
    for (const pid of postmasterFirst ? [server.pid!, ...children] : [...children, server.pid!]) {
      try { process.kill(pid, signal); } catch { /* gone meanwhile */ }
    }
  };
  const waitForExit = (timeoutMs: number) => new Promise<boolean>((resolve) => {
    if (exited()) return resolve(true);
    const timer = setTimeout(() => resolve(false), timeoutMs);
    server.once('exit', () => { clearTimeout(timer); resolve(true); });
  });
  let watchdog: ChildProcess | undefined;
  const unwatch = () => { if (watchdog?.exitCode === null) watchdog.kill('SIGKILL'); watchdog = undefined; };
  try {
    await launch();
    watchdog = watch(server!.pid!, plan.base);
  } catch (error) {
    signalAll('SIGKILL', true);
    throw error;
  }
  let stopped = false;
  return {
    url,
    external: false,
    // Postmaster first, so that it forks nothing new meanwhile; resumed last.
    pause: () => signalAll('SIGSTOP', true),
    resume: () => signalAll('SIGCONT', false),
    kill: async () => {
      unwatch();
      signalAll('SIGKILL', true);
      await waitForExit(10_000);
    },
    restart: async () => {
      if (!exited()) throw new Error(`restart: the server on port ${plan.port} is still running (kill it first)`);
      await launch();
      watchdog = watch(server.pid!, plan.base);
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      unwatch();
      if (!exited()) {
        signalAll('SIGCONT', false);
        // SIGINT: fast shutdown (backends' transactions rolled back), then the folder can go.
        process.kill(server.pid!, 'SIGINT');
        if (!await waitForExit(15_000)) {
          signalAll('SIGKILL', true);
          await waitForExit(5_000);
        }
      }
      rmSync(plan.base, { recursive: true, force: true });
    },
  };
}

/** The processes whose parent is `pid` (Linux: read from /proc; elsewhere none, and only the postmaster is signalled). */
function childrenOf(pid: number): number[] {
  let entries: string[];
  try { entries = readdirSync('/proc'); } catch { return []; }
  const children: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so the fields are read after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch { /* ended meanwhile */ }
  }
  return children;
}

/**
 * A watchdog for a test process that ends without `stop` (killed by a timeout, a crash, SIGKILL): a shell that waits
 * for its stdin, a pipe from this process, to close (it does however this process ends), then stops the server
 * (fast shutdown, then SIGKILL: its backends end when they see the postmaster gone) and removes its folder.
 * `stop` and `kill` end the watchdog first.
 */
function watch(postmaster: number, base: string): ChildProcess {
  const script = 'read _ignored; kill -INT "$1" 2>/dev/null; sleep 2; kill -KILL "$1" 2>/dev/null; sleep 1; rm -rf "$2"';
  const watchdog = spawn('sh', ['-c', script, 'ims-test-postgres-watchdog', String(postmaster), base], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
  // The pipe's socket must not keep this process alive nor fail it when the watchdog is gone.
  watchdog.stdin!.on('error', () => undefined);
  return watchdog;
}

async function checkReachable(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    throw new Error(`IMS_TEST_DATABASE_URL (${redact(url)}) is not reachable: ${(error as Error).message}`, { cause: error });
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A URL without its password, for messages. */
export const redact = describeUrl;

/** A new, empty database on the server of `url`, uniquely named; its URL. */
export async function freshDatabase(url: string): Promise<string> {
  const name = `ims_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const made = madeDatabases.get(url) ?? new Set<string>();
  made.add(name);
  madeDatabases.set(url, made);
  const fresh = new URL(url);
  fresh.pathname = `/${name}`;
  return fresh.toString();
}

/** Drop what `freshDatabase` made on an external server (a server started here goes with its folder). */
async function dropMadeDatabases(url: string): Promise<void> {
  const made = madeDatabases.get(url);
  if (!made?.size) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const name of made) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    made.clear();
    await client.end();
  }
}
