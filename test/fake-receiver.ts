// A tiny HTTP receiver for outbound-webhook tests: records every request (method, path, headers, JSON
// body) and answers 200 {"ok":true}, unless told to be down or to fail the next few requests.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON, or the raw text when it is not JSON (undefined when empty). */
  body: any;
  /** What was answered; 0 when the connection was destroyed instead. */
  status: number;
  at: number;
}

export class FakeReceiver {
  /** Every request, answered or not, oldest first. */
  readonly requests: ReceivedRequest[] = [];
  readonly url: string;
  #down: number | 'refuse' | false = false;
  #failures: { count: number; status: number } | null = null;
  readonly #server: http.Server;

  private constructor(server: http.Server) {
    this.#server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    server.on('request', (req, res) => void this.#onRequest(req, res).catch(() => res.destroy()));
  }

  static async start(): Promise<FakeReceiver> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return new FakeReceiver(server);
  }

  /** Requests that were answered 2xx: what the receiving system actually accepted. */
  get accepted(): ReceivedRequest[] {
    return this.requests.filter((r) => r.status >= 200 && r.status < 300);
  }

  /** Outage: every request answers `status`, or with `'refuse'` has its socket destroyed; `false` ends it. */
  setDown(down: number | 'refuse' | false): void {
    this.#down = down;
  }

  /** The next `count` requests answer `status`. */
  failNext(count: number, status: number): void {
    this.#failures = count > 0 ? { count, status } : null;
  }

  async waitFor<T>(predicate: () => T | undefined | false | null, what = 'a condition', timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = predicate();
      if (value) return value as T;
      if (Date.now() >= deadline) throw new Error(`FakeReceiver: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: any;
    try { body = raw ? JSON.parse(raw) : undefined; } catch { body = raw; }
    const record = (status: number) => this.requests.push({
      method: req.method ?? 'GET', path: new URL(req.url ?? '/', this.url).pathname, headers: { ...req.headers }, body, status, at: Date.now(),
    });
    if (this.#down === 'refuse') {
      record(0);
      req.socket.destroy();
      return;
    }
    let status = 200;
    if (typeof this.#down === 'number') status = this.#down;
    else if (this.#failures) {
      status = this.#failures.status;
      if (--this.#failures.count <= 0) this.#failures = null;
    }
    record(status);
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(status < 300 ? { ok: true } : { error: `failure ${status}` }));
  }
}
