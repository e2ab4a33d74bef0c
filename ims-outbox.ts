/**
 * The outbox worker: delivers what plugins queued with `ctx.outbox.enqueue` (Argus exports, forwards), the head
 * of each group in order, through the plugin's `deliver`, bounded by `hookTimeoutMs`; failures back off with
 * jitter, a permanent one is dead-lettered. Durable: what is queued survives a stop or crash.
 */
import type { CompiledConfig, HookContext, Logger, Plugin } from './ims.ts';
import type { OutboxItem, Store } from './ims-state.ts';
import { PluginHookError, TimeoutError, failureReason, isPermanentDeliveryError, withTimeout } from './ims-plugin-kit.ts';

/** What the outbox worker needs from the running IMS. */
export interface OutboxInputs {
  state: Store;
  config(): CompiledConfig;
  /** The context a plugin's `deliver` receives, as its hooks do. */
  contextFor(plugin: Plugin, signal: AbortSignal): HookContext;
  log: Logger;
  now(): number;
  /** True once IMS is stopping: nothing new is kicked off. */
  stopping(): boolean;
  /** Whether this instance delivers (the leader, with several instances): a flush under way stops when it no longer does. */
  delivering(): boolean;
  track<T>(work: Promise<T>): Promise<T>;
}

/** Delivers the plugins' queued deliveries, in order per group, with backoff; durable across restarts. */
export class OutboxWorker {
  private running?: Promise<void>;

  constructor(private readonly inputs: OutboxInputs) {}

  /** Something was queued: deliver it on the next turn. */
  kick(): void {
    if (!this.inputs.stopping()) setImmediate(() => void this.inputs.track(this.flush()));
  }

  /** Deliver what is due (up to 50 rounds), one flush at a time: a second call joins the one under way. */
  flush(): Promise<void> {
    this.running ??= (async () => {
      // Yield first: finishing synchronously (nothing due) would run `finally` before `??=` assigns, leaving a settled promise that blocks every later flush.
      await Promise.resolve();
      try {
        for (let round = 0; round < 50 && this.inputs.delivering(); round++) {
          const due = await this.inputs.state.dueDeliveries(this.inputs.now());
          if (!due.length) break;
          await Promise.all(due.map((item) => this.deliver(item)));
        }
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async deliver(item: OutboxItem): Promise<void> {
    const { state, log, now } = this.inputs;
    const config = this.inputs.config();
    const plugin = config.plugins.find((p) => p.name === item.plugin);
    if (!plugin?.deliver) {
      await state.markRetry(item.id, now() + 5 * 60_000, `no plugin '${item.plugin}' with a deliver() is configured`);
      return;
    }
    const delivery = { key: item.key, group: item.group, payload: item.payload, attempts: item.attempts };
    try {
      await withTimeout((signal) => plugin.deliver!(delivery, this.inputs.contextFor(plugin, signal)), config.hookTimeoutMs, `plugin '${plugin.name}' delivery`);
      await state.markDelivered(item.id, now());
    } catch (error) {
      const message = error instanceof TimeoutError ? error.message : failureReason(error);
      // Where the plugin failed (its stack's first frames), as for a hook.
      const { at, stack } = new PluginHookError(plugin.name, 'deliver', error).fields();
      if (isPermanentDeliveryError(error)) {
        await state.markDead(item.id, message);
        log.error(`outbox: '${item.plugin}' gave up on ${item.key}: ${message}`, { at, stack });
        return;
      }
      const backoff = Math.min(5 * 60_000, 1000 * 2 ** Math.min(item.attempts, 16));
      const retryAt = now() + backoff / 2 + Math.random() * backoff / 2;
      await state.markRetry(item.id, retryAt, message);
      const stats = await state.outboxStats();
      log.warn(`outbox: '${item.plugin}' delivery of ${item.key} failed (attempt ${item.attempts + 1}): ${message}; retry in ${Math.round((retryAt - now()) / 1000)} s`,
        { depth: stats.depth, oldest_age_s: stats.oldestAt ? Math.round((now() - stats.oldestAt) / 1000) : 0, at, stack });
    }
  }
}
