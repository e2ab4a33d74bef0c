/**
 * The operations endpoint, off by default (`--http 127.0.0.1:9464`, or `http` in the config): `/healthz` says
 * whether this instance is connected to Slack, can reach its state and what role it has (200 when it can do its
 * work, 503 when not, with the reasons as JSON); `/metrics` is Prometheus' exposition format (`ims-metrics.ts`).
 */
import http from 'node:http';
import type { Logger } from './ims.ts';
import type { Metrics, MetricSources } from './ims-metrics.ts';
import { errorText } from './ims-log.ts';

/** What `/healthz` checks. */
export interface HealthSources {
  instance: string;
  connected(): boolean;
  /** Throws when the state cannot be read. */
  checkState(): void | Promise<void>;
  role(): 'leader' | 'standby';
}

/** `host:port`, `:port` or `port` (host 127.0.0.1: never every interface unless asked for). */
export function parseListen(text: string): { host: string; port: number } | undefined {
  const match = /^(?:(\[[0-9a-f:]+\]|[\w.-]+)?:)?(\d{1,5})$/i.exec(text.trim());
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port > 65_535) return undefined;
  return { host: (match[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

/** The HTTP server of `/healthz` and `/metrics`. */
export class OpsServer {
  private server?: http.Server;

  constructor(private readonly inputs: { listen: { host: string; port: number }; metrics: Metrics; health: HealthSources; log: Logger }) {}

  /** Listen; resolves with the address actually bound (port 0 picks a free one). Fails when the address is taken. */
  start(): Promise<{ host: string; port: number }> {
    const { listen, log } = this.inputs;
    const server = http.createServer((request, response) => void this.answer(request, response));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`--http ${listen.host}:${listen.port}: cannot listen (${error.code ?? errorText(error)}); choose another address or port`)));
      server.listen(listen.port, listen.host, () => {
        const address = server.address() as { address: string; port: number };
        log.info(`operations endpoint on http://${listen.host}:${address.port} (/healthz, /metrics)`);
        resolve({ host: listen.host, port: address.port });
      });
    });
  }

  stop(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections?.(); });
  }

  private async answer(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const path = (request.url ?? '/').split('?')[0];
    try {
      if (request.method !== 'GET' && request.method !== 'HEAD') return this.send(response, 405, 'text/plain; charset=utf-8', 'GET only\n');
      if (path === '/healthz') {
        const health = await this.health();
        return this.send(response, health.ok ? 200 : 503, 'application/json; charset=utf-8', `${JSON.stringify(health)}\n`);
      }
      if (path === '/metrics') {
        const { contentType, text } = await this.inputs.metrics.render();
        return this.send(response, 200, contentType, text);
      }
      this.send(response, 404, 'text/plain; charset=utf-8', 'not found: try /healthz or /metrics\n');
    } catch (error) {
      this.inputs.log.warn(`operations endpoint: ${path} failed: ${errorText(error)}`);
      this.send(response, 500, 'text/plain; charset=utf-8', 'internal error (logged)\n');
    }
  }

  private async health(): Promise<{ ok: boolean; instance: string; slack: 'connected' | 'disconnected'; state: 'reachable' | string; role: string; problems: string[] }> {
    const { health } = this.inputs;
    const problems: string[] = [];
    const connected = health.connected();
    if (!connected) problems.push('not connected to Slack (Socket Mode)');
    let state = 'reachable';
    try { await health.checkState(); } catch (error) { state = `unreachable: ${errorText(error)}`; problems.push(`state ${state}`); }
    return { ok: problems.length === 0, instance: health.instance, slack: connected ? 'connected' : 'disconnected', state, role: health.role(), problems };
  }

  private send(response: http.ServerResponse, status: number, contentType: string, body: string): void {
    response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
    response.end(body);
  }
}

/**
 * Wire the metrics to what they read, and make the endpoint when one is asked for (undefined otherwise). The role is
 * `leader` while one instance does all the work.
 */
export function operationsFor(inputs: {
  listen?: { host: string; port: number }; metrics: Metrics; instance: string; log: Logger;
  state: { incidentCounts(): ReturnType<MetricSources['incidents']>; outboxStats(): ReturnType<MetricSources['outbox']>; getMeta(key: string): Promise<unknown> };
  queueDepth(): number; catchUpLagSeconds(): number; connected(): boolean; now(): number;
  /** This instance's role among those sharing the state. */
  role(): 'leader' | 'standby';
}): OpsServer | undefined {
  const { metrics, state } = inputs;
  metrics.readFrom({
    incidents: () => state.incidentCounts(), outbox: () => state.outboxStats(), queueDepth: inputs.queueDepth, catchUpLagSeconds: inputs.catchUpLagSeconds,
    connected: inputs.connected, role: inputs.role, now: inputs.now,
  });
  if (!inputs.listen) return undefined;
  return new OpsServer({
    listen: inputs.listen, metrics, log: inputs.log,
    health: { instance: inputs.instance, connected: inputs.connected, role: inputs.role, checkState: async () => { await state.getMeta('health'); } },
  });
}
