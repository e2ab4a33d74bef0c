/**
 * The process around a running IMS: a rejection or exception nobody handled is logged and survived, SIGINT and
 * SIGTERM stop gracefully at any point, and IMS stops when whatever started it is gone (npx and tsx would leave
 * it running as an orphan).
 */
import { readFileSync } from 'node:fs';
import type { Logger } from './ims.ts';
import { describeError } from './ims-log.ts';

/** From the first SIGINT/SIGTERM (or other reason to stop) to the process's end, at most. */
export const STOP_LIMIT_MS = 9500;

/**
 * Process-wide guards, installed before start-up: a rejection or exception nobody handled is logged with
 * where it came from and IMS runs on (one bad frame or SDK bug must not stop alerting); SIGINT/SIGTERM stop
 * gracefully, at any point, start-up included; and IMS stops when the process that started it is gone.
 */
export function guardProcess(log: Logger, stop: (why: string, code: number) => void): void {
  // A closed stderr (the terminal or wrapper that read it is gone) must not end IMS, nor loop on reporting itself.
  process.stderr.on('error', () => undefined);
  process.on('unhandledRejection', (reason) => {
    // socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect waiting for hello: nothing to do.
    if (reason === undefined) return;
    log.error(`unhandled rejection (IMS runs on): ${describeError(reason)}`);
  });
  process.on('uncaughtException', (error, origin) => {
    log.error(`uncaught exception in ${origin} (IMS runs on): ${describeError(error)}`);
  });
  let signalled = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      log.info(signalled ? `${signal} received again: already stopping (the process ends within ${STOP_LIMIT_MS / 1000} s)` : `${signal} received`);
      signalled = true;
      stop(signal, 0);
    });
  }
  watchParent((why) => {
    log.warn(`${why}: stopping (IMS_PARENT_WATCH=off keeps it running without)`);
    stop('parent gone', 0);
  });
}


/**
 * Call `onGone` when the process that started IMS is gone: its parent exits (IMS is handed to init), or one of
 * the launchers between them does (`npx tsx ims.ts` is npm → sh → tsx → IMS, and a SIGTERM to npm leaves tsx
 * and IMS running as orphans), or an IPC channel to the parent closes. Polled once a second; off when IMS's
 * parent is init (systemd, a container's PID 1) and with IMS_PARENT_WATCH=off.
 */
function watchParent(onGone: (why: string) => void): void {
  if (process.env.IMS_PARENT_WATCH === 'off') return;
  const parent = process.ppid;
  const launchers = launcherChain(parent);
  if (process.channel) process.once('disconnect', () => onGone('the IPC channel to its parent closed'));
  if (parent <= 1 && !launchers.length) return;
  // What started the outermost launcher (a shell script running `npx tsx ims.ts`): when it goes, the launchers
  // are handed to init and run on, so its going counts too (not when that is init or a supervisor already).
  const outermost = launchers.at(-1);
  const starter = outermost ? processParent(outermost.pid) : undefined;
  const timer = setInterval(() => {
    const gone = parent > 1 && process.ppid !== parent ? `its parent process (pid ${parent}) exited`
      : launchers.filter((l) => processStart(l.pid) !== l.start).map((l) => `its launcher '${l.name}' (pid ${l.pid}) exited`)[0]
      ?? (outermost && starter !== undefined && starter > 1 && processParent(outermost.pid) !== starter
        ? `the process that started its launcher (pid ${starter}) exited` : undefined);
    if (!gone) return;
    clearInterval(timer);
    onGone(gone);
  }, 1000);
  timer.unref();
}

const LAUNCHER = /(^|[/\\])(npx|npm|pnpm|yarn|tsx)(-cli)?(\.[cm]?js)?$|^npm (exec|run|start|x)\b|[/\\]tsx[/\\]dist[/\\]cli\.mjs$/;

/** The launchers above IMS (npm, npx, tsx, a shell running them), nearest first, from /proc (Linux; elsewhere none). */
function launcherChain(parent: number): { pid: number; start: string; name: string }[] {
  const chain: { pid: number; start: string; name: string }[] = [];
  for (let pid = parent; pid > 1 && chain.length < 8;) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      break;
    }
    const start = processStart(pid);
    // `sh -c 'tsx' ims.ts` carries the command as one argument: look at its words.
    const words = args.flatMap((arg) => arg.split(/\s+/)).map((word) => word.replace(/^['"]|['"]$/g, ''));
    if (start === undefined || !(args.some((arg) => LAUNCHER.test(arg)) || words.some((word) => LAUNCHER.test(word)))) break;
    chain.push({ pid, start, name: args.join(' ').slice(0, 60) });
    pid = processParent(pid) ?? 0;
  }
  return chain;
}

/** Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): [state, ppid, …]. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** When a process started (clock ticks since boot): with its pid, it names the process even after the pid is reused. */
function processStart(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

function processParent(pid: number): number | undefined {
  const ppid = Number(procStat(pid)?.[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

