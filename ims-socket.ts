/**
 * The Socket Mode connection: socket-mode 3.1 (loaded here, when IMS first connects) with three repairs. IMS
 * gets the connection URL itself (the SDK's retries for hours without a word, and its failures crash a
 * reconnect), a failed reconnect is reported instead of left as an unhandled rejection, and frames the SDK
 * cannot take are acked and skipped instead of rejecting inside its listener.
 */
import { createRequire } from 'node:module';
import type { SocketModeClient } from '@slack/socket-mode';
import type { WebClient } from '@slack/web-api';
import type { Logger } from './ims.ts';
import { classifySlackFailure } from './ims-plugin-kit.ts';
import { errorText } from './ims-log.ts';
import { SlackTokenError, StoppedError, createSlackClient, pause, retryDelay, type WebClientOptions } from './ims-slack.ts';
import type { Envelope } from './ims-intake.ts';

/** The parts of socket-mode 3.1's client that IMS repairs (private in its types). */
interface SocketInternals {
  retrieveWSSURL: () => Promise<string>;
  start: () => Promise<unknown>;
  send: (envelopeId: string, body?: unknown) => Promise<void>;
  connectionResponse?: unknown;
  numOfConsecutiveReconnectionFailures: number;
}

/** What the connection needs, and whom it tells. */
export interface SocketInputs {
  appToken: string;
  /** The Web API options every client shares (URL, transport, time-out, the quiet SDK logger). */
  web: WebClientOptions;
  log: Logger;
  /** Socket Mode ping timeout (default 5000 ms). */
  pingTimeoutMs?: number;
  /** While start-up is reaching Slack: when it gives up (undefined afterwards). */
  startDeadline(): number | undefined;
  stopping(): boolean;
  /** The app token was refused while running: IMS cannot go on. */
  fatal(error: SlackTokenError): void;
  onEnvelope(envelope: Envelope): void;
  /** Connected: the first time, or again after a drop (`count` > 1, when what was missed must be caught up). */
  onConnected(count: number): void;
  /** The socket itself went away: what came in its last `lostMs` may be lost too (a silent link is noticed late). */
  onDropped(lostMs: number): void;
}

/** One Socket Mode connection, repaired (see the module comment); tells its owner of envelopes, connections and drops. */
export class SocketConnection {
  private socket?: SocketModeClient;
  private connections = 0;

  constructor(private readonly inputs: SocketInputs) {}

  /** Build the client and connect (resolves at the first hello). */
  connect(): Promise<unknown> {
    const { log } = this.inputs;
    const { SocketModeClient: Client } = createRequire(import.meta.url)('@slack/socket-mode') as typeof import('@slack/socket-mode');
    const socket = new Client({
      appToken: this.inputs.appToken, clientPingTimeout: this.inputs.pingTimeoutMs,
      // Its own WebClient is replaced by `connectionUrl`; it must not retry on its own either.
      clientOptions: { ...this.inputs.web, retryConfig: { retries: 0 } },
      logger: this.inputs.web.logger,
    });
    this.socket = socket;
    const internals = socket as unknown as SocketInternals;
    const appApi = createSlackClient(this.inputs.appToken, this.inputs.web, { retry: { retries: 0 }, log, name: 'Socket Mode' });
    internals.retrieveWSSURL = () => this.connectionUrl(socket, appApi);
    const sdkStart = socket.start.bind(socket);
    // The SDK reconnects through `this.start()` and leaves its rejection unhandled, which would end the process.
    internals.start = () => sdkStart().catch((error: unknown) => {
      if (!(error instanceof SlackTokenError) && !(error instanceof StoppedError)) log.debug(`Socket Mode reconnect attempt failed: ${errorText(error)}`);
      return undefined;
    });
    this.guardFrames(socket);
    socket.on('slack_event', (envelope: Envelope) => this.inputs.onEnvelope(envelope));
    socket.on('connected', () => {
      this.connections++;
      log.info(this.connections === 1 ? 'Socket Mode connected' : 'Socket Mode reconnected; catching up');
      this.inputs.onConnected(this.connections);
    });
    // 'close' is the socket itself going away (the SDK then reconnects without a 'disconnected'). A silent link is
    // only noticed when pings go unanswered, so what came up to two ping timeouts (and a second) earlier may be lost too.
    socket.on('close', () => this.inputs.onDropped(2 * (this.inputs.pingTimeoutMs ?? 5000) + 1000));
    socket.on('disconnected', () => { if (!this.inputs.stopping()) log.warn('Socket Mode disconnected; reconnecting'); });
    return sdkStart();
  }

  /**
   * Disconnect (waiting at most until `deadline`) and stop listening; a reconnect that was already fetching its
   * URL when IMS stopped still connects afterwards (socket-mode 3.1 does not check), and is closed again.
   */
  async close(settleWithin: (work: Promise<unknown>, deadline: number) => Promise<boolean>, deadline: number): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    // socket-mode 3.1 rejects with `undefined` when disconnect() races a reconnect waiting for hello.
    await settleWithin(socket.disconnect().catch(() => undefined), deadline);
    // Only ours: the client's own listeners ('close', 'ws_message', 'error') must stay.
    for (const event of ['slack_event', 'connected', 'disconnected']) socket.removeAllListeners(event);
    socket.on('connected', () => void socket.disconnect().catch(() => undefined));
  }

  /** Whether a socket was ever built (start-up got that far). */
  get built(): boolean {
    return this.socket !== undefined;
  }

  /**
   * The Socket Mode URL from apps.connections.open: retried with backoff, each retry logged with its reason; at
   * start-up until the start deadline, afterwards until it works. A refused app token is fatal. A stop lets a
   * wait under way finish with its one attempt (what that connects, `close()` closes) and starts no other.
   */
  private async connectionUrl(socket: SocketModeClient, api: WebClient): Promise<string> {
    const internals = socket as unknown as SocketInternals;
    for (let attempt = 1; ; attempt++) {
      const begunStopping = this.inputs.stopping();
      try {
        const answer = await api.apps.connections.open({});
        if (!answer.url) throw new Error('apps.connections.open answered without a URL');
        internals.numOfConsecutiveReconnectionFailures = 0;
        internals.connectionResponse = answer;
        socket.emit('authenticated', answer);
        return answer.url;
      } catch (error) {
        const failure = classifySlackFailure(error);
        if (failure.kind === 'auth' || failure.code === 'missing_scope') {
          const fatal = new SlackTokenError('SLACK_APP_TOKEN', 'apps.connections.open', failure.code);
          // At start-up, start() reports it; a reconnect has nobody waiting for it.
          if (this.inputs.startDeadline() === undefined) this.inputs.fatal(fatal);
          throw fatal;
        }
        if (begunStopping) throw new StoppedError();
        let delay = failure.retryAfterMs ?? retryDelay({ retries: Infinity, minTimeout: 1000, maxTimeout: 30_000 }, attempt);
        const deadline = this.inputs.startDeadline();
        if (deadline !== undefined) {
          if (deadline - Date.now() <= 100) throw error;
          delay = Math.min(delay, deadline - Date.now());
        }
        this.inputs.log.warn(`Socket Mode: apps.connections.open at ${api.slackApiUrl} failed (${failure.reason}); retry ${attempt} in ${(delay / 1000).toFixed(1)} s`);
        await pause(delay);
      }
    }
  }

  /**
   * socket-mode 3.1 reads `payload.event.type` of an `events_api` frame before anyone can look, so a frame
   * without an event (or without a payload) rejects inside its listener: an unhandled rejection. Frames go to
   * it guarded; one it cannot take is logged, acked (so Slack does not send it again) and skipped.
   */
  private guardFrames(socket: SocketModeClient): void {
    const internals = socket as unknown as SocketInternals;
    const [sdkOnFrame] = socket.listeners('ws_message') as ((data: string | ArrayBuffer, isBinary: boolean) => Promise<void>)[];
    if (!sdkOnFrame) return;
    socket.removeAllListeners('ws_message');
    socket.on('ws_message', (data: string | ArrayBuffer, isBinary: boolean) => {
      const skip = (error: unknown) => {
        const text = typeof data === 'string' ? data : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : String(JSON.stringify(data));
        let envelopeId: unknown;
        try { envelopeId = (JSON.parse(text) as { envelope_id?: unknown } | null)?.envelope_id; } catch { /* not JSON: nothing to ack */ }
        this.inputs.log.warn(`malformed Socket Mode frame skipped (${errorText(error)}): ${text.slice(0, 300)}`);
        if (typeof envelopeId === 'string' && envelopeId) internals.send(envelopeId).catch(() => undefined);
      };
      try {
        sdkOnFrame(data, isBinary).catch(skip);
      } catch (error) {
        skip(error);
      }
    });
  }
}
