/**
 * Reaching Slack, and losing it for good: a start-up step that must reach Slack is retried until the start-up
 * time-out (each retry logged) and then fails with one clear message; a token Slack refuses (at start-up or while
 * running, once `auth.test` agrees) ends IMS with a line naming the token, as nothing else can mend it.
 */
import type { WebClient } from '@slack/web-api';
import type { Logger } from './ims.ts';
import { TimeoutError, classifySlackFailure, withTimeout } from './ims-plugin-kit.ts';
import { ConfigError } from './ims-config-errors.ts';
import { SlackTokenError, SlackUnreachableError, StoppedError } from './ims-slack.ts';

export interface SlackReachInputs {
  /** IMS's own Web API client (made after this unit: its policy asks this unit for the start-up deadline). */
  slack(): WebClient;
  log: Logger;
  /** How long start-up keeps trying (default 60 s). */
  startTimeoutMs?: number;
  /** Aborted when a stop begins: a start-up step gives up at once. */
  stopRequested: AbortSignal;
  stopping(): boolean;
  /** A token was refused: IMS cannot go on (default: log it and stop). */
  onFatal?: (error: SlackTokenError) => void;
  stop(): void;
}

export class SlackReach {
  /** While start-up is reaching Slack: the time it gives up (the clients retry until then, logging each retry). */
  private startDeadline?: number;
  private fatalReported = false;
  private checkingToken = false;

  constructor(private readonly inputs: SlackReachInputs) {}

  /** The start-up deadline while a start-up step runs; undefined afterwards. */
  deadline(): number | undefined {
    return this.startDeadline;
  }

  /**
   * A start-up step that must reach Slack: its calls are retried until `startTimeoutMs` (each retry logged
   * with its reason), then it fails with one clear message. A refused token fails it at once, naming the token.
   */
  async reach<T>(what: 'auth.test' | 'Socket Mode', step: () => Promise<T>): Promise<T> {
    const timeoutMs = this.inputs.startTimeoutMs ?? 60_000;
    const where = this.inputs.slack().slackApiUrl;
    const giveUp = (reason: string) => new SlackUnreachableError(`cannot reach Slack at ${where}: ${what === 'auth.test' ? 'auth.test' : 'the Socket Mode connection'} ${reason}, `
      + `gave up after ${Math.round(timeoutMs / 1000)} s; check the network (DNS, proxy, firewall), SLACK_API_URL and https://slack-status.com, then start IMS again`);
    this.startDeadline = Date.now() + timeoutMs;
    try {
      // Whatever a step waits for without failing (a hello that never comes), it does not wait past the deadline.
      return await untilStopped(this.inputs.stopRequested, withTimeout(() => step(), timeoutMs + 500, what));
    } catch (error) {
      if (error instanceof TimeoutError) throw giveUp('did not complete');
      if (error instanceof StoppedError || error instanceof SlackTokenError || error instanceof SlackUnreachableError || error instanceof ConfigError) throw error;
      const failure = classifySlackFailure(error);
      if (failure.kind === 'auth') throw new SlackTokenError(what === 'auth.test' ? 'SLACK_BOT_TOKEN' : 'SLACK_APP_TOKEN', what === 'auth.test' ? what : 'apps.connections.open', failure.code);
      if (failure.kind === 'permanent') throw new Error(`${what} at ${where} failed: ${failure.reason}`, { cause: error });
      throw giveUp(`failed (${failure.reason})`);
    } finally {
      this.startDeadline = undefined;
    }
  }

  /** Slack refused a token while running: IMS cannot go on. */
  fatal(error: SlackTokenError): void {
    if (this.fatalReported) return;
    this.fatalReported = true;
    if (this.inputs.onFatal) this.inputs.onFatal(error);
    else {
      this.inputs.log.error(error.message);
      this.inputs.stop();
    }
  }

  /** A call was refused for its token: if auth.test agrees (revoked, not one call's quirk), IMS cannot go on. */
  botTokenRefused(method: string, code: string): void {
    if (this.inputs.stopping()) return;
    if (method === 'auth.test') {
      // At start-up, start() reports it.
      if (this.startDeadline === undefined) this.fatal(new SlackTokenError('SLACK_BOT_TOKEN', method, code));
      return;
    }
    if (this.checkingToken) return;
    this.checkingToken = true;
    void this.inputs.slack().auth.test().then(
      () => this.inputs.log.error(`${method}: Slack refused the bot token (${code}), though auth.test accepts it`),
      () => undefined, // a refusal is reported by the auth.test call itself
    ).finally(() => { this.checkingToken = false; });
  }
}

/** `work`, or a `StoppedError` as soon as `stop` is aborted (the work itself is left to finish or fail unobserved). */
export function untilStopped<T>(stop: AbortSignal, work: Promise<T>): Promise<T> {
  if (stop.aborted) { work.catch(() => undefined); return Promise.reject(new StoppedError()); }
  return new Promise<T>((resolve, reject) => {
    const onStop = () => reject(new StoppedError());
    stop.addEventListener('abort', onStop, { once: true });
    work.then((value) => { stop.removeEventListener('abort', onStop); resolve(value); },
      (error) => { stop.removeEventListener('abort', onStop); reject(error); });
  });
}
