/**
 * The hook runner: every plugin's hook runs isolated (settled, bounded by `hookTimeoutMs`), plugins concurrently;
 * a failure keeps its stack and is stamped with plugin and hook, and several failures of one event are reported
 * together. Also what each hook receives: one context per plugin, built from narrow inputs.
 */
import type { WebClient } from '@slack/web-api';
import type { AlertMessage, CompiledConfig, Decision, HookContext, HookName, Incident, Logger, NameService, Plugin, RuleMatch } from './ims.ts';
import type { Store } from './ims-state.ts';
import { PluginHookError, PluginHookErrors, withTimeout } from './ims-plugin-kit.ts';

/**
 * Run a hook of every plugin that has it, CONCURRENTLY, each plugin isolated from the others. Given a list
 * (`['onMatch', 'onHotline']`), each plugin runs those hooks in order, the next after the previous settled,
 * whatever its outcome. Each call is bounded by `timeoutMs` (`withTimeout`: its signal is aborted past it).
 * A failure is stamped (`PluginHookError`: plugin, hook, the plugin's stack) and logged at once as
 * `plugin 'NAME' failed in HOOK: why` with `at=file:line`; when several fail for this one event, one more line
 * reports them together. Never rejects: resolves with the failures (`PluginHookErrors`), or undefined.
 */
export async function runHooks<K extends HookName>(plugins: readonly Plugin[], hooks: K | readonly K[],
  makeContext: (plugin: Plugin, signal: AbortSignal, hook: K) => Parameters<NonNullable<Plugin[K]>>[0],
  options: { timeoutMs: number; log: Logger; event?: string }): Promise<PluginHookErrors | undefined> {
  const sequence: readonly K[] = typeof hooks === 'string' ? [hooks as K] : hooks as readonly K[];
  const failures: PluginHookError[] = [];
  let event = options.event;
  await Promise.all(plugins.map(async (plugin) => {
    for (const hook of sequence) {
      const fn = plugin[hook] as ((ctx: unknown) => unknown) | undefined;
      if (typeof fn !== 'function') continue;
      try {
        await withTimeout((signal) => {
          const ctx = makeContext(plugin, signal, hook);
          event ??= hookEvent(ctx);
          return fn.call(plugin, ctx);
        }, options.timeoutMs, `plugin '${plugin.name}' ${hook}`);
      } catch (error) {
        const failure = new PluginHookError(plugin.name, hook, error);
        failures.push(failure);
        options.log.error(failure.message, failure.fields());
      }
    }
  }));
  if (!failures.length) return undefined;
  const together = new PluginHookErrors(failures, event ?? sequence.join('/'));
  if (failures.length > 1) options.log.error(together.message, { hook: sequence.join(','), event: together.event });
  return together;
}

/** What a hook's context is about, for the line that reports several failures together. */
function hookEvent(ctx: unknown): string | undefined {
  const c = ctx as { incident?: { id?: number }; message?: { channel?: string; ts?: string }; report?: unknown } | undefined;
  if (c?.incident?.id !== undefined) return `incident #${c.incident.id}${c.message ? ` (message ${c.message.channel} ${c.message.ts})` : ''}`;
  if (c?.message) return `message ${c.message.channel} ${c.message.ts}`;
  if (c?.report) return 'the report';
  return undefined;
}

/**
 * What a caller of `HookRunner.run` gives besides the shared context: the hook's own fields, `decision` optional (the
 * pipeline always gives it; a caller replaying a hook may leave it to `withDecision`).
 */
export type HookExtra<C> = Omit<C, keyof HookContext | 'decision'> & ('decision' extends keyof C ? { decision?: C['decision'] } : unknown);

/** A message hook's context with its `decision`: when the caller gave none, the one its match, incident or repost implies. */
function withDecision<C extends object>(ctx: C): C {
  const given = ctx as C & { message?: AlertMessage; decision?: Decision; match?: RuleMatch; incident?: Incident; repost?: { channel: string } };
  if (!given.message || given.decision) return ctx;
  const decision: Decision = given.repost ? { action: 'reverse repost', channel: given.repost.channel, header: given.incident?.head ?? '' }
    : given.match && given.incident ? { action: 'incident', match: given.match, channel: given.incident.incidentChannel, hotline: given.incident.hotline }
      : { action: 'seen', match: given.match, reaction: '' };
  return { ...ctx, decision };
}

/** What the hook runner needs from the running IMS. */
export interface HookRunnerInputs {
  config(): CompiledConfig;
  state: Store;
  /** The client plugins get (it waits out its own 429s). */
  slack: WebClient;
  log: Logger & { child(tag: string): Logger };
  botUserId(): string;
  now(): number;
  names: NameService;
  /** Whether this instance leads (does the work that must happen once). */
  leading(): boolean;
  /** Channels plugins made for themselves (war rooms): never alert sources. */
  pluginChannels: Set<string>;
  permalink(channel: string, ts: string): string;
  /** Something was queued in the outbox: deliver it soon. */
  kickOutbox(): void;
  /** Aborted when IMS stops: every hook's signal follows it. */
  stopped: AbortSignal;
  /** Keep the run in IMS's in-flight work (a stop waits for it). */
  track<T>(work: Promise<T>): Promise<T>;
  /** A hook failed (for the metrics; it is logged already). */
  onFailure?(plugin: string, hook: string): void;
}

/** Runs the plugins' hooks with their contexts (`run`), and builds a plugin's context for other callers (`contextFor`). */
export class HookRunner {
  constructor(private readonly inputs: HookRunnerInputs) {}

  /**
   * Run a hook (or, per plugin, a sequence of hooks: `['onMatch', 'onHotline']`) of every plugin, each with its
   * full context (see `runHooks`); `plugins` defaults to the config's. Resolves with the failures, never rejects.
   */
  run<K extends HookName>(hooks: K | readonly K[], extra: (hook: K) => HookExtra<Parameters<NonNullable<Plugin[K]>>[0]>,
    plugins?: readonly Plugin[]): Promise<PluginHookErrors | undefined> {
    const config = this.inputs.config();
    const targets = plugins ?? config.plugins;
    const sequence: readonly K[] = typeof hooks === 'string' ? [hooks as K] : hooks as readonly K[];
    if (!targets.some((p) => sequence.some((hook) => typeof p[hook] === 'function'))) return Promise.resolve(undefined);
    const run = runHooks(targets, sequence, (plugin, signal, hook) => withDecision({ ...this.contextFor(plugin, signal), ...extra(hook) }) as never,
      { timeoutMs: config.hookTimeoutMs, log: this.inputs.log });
    const counted = run.then((failures) => {
      for (const failure of failures?.errors ?? []) this.inputs.onFailure?.(failure.plugin, failure.hook);
      return failures;
    });
    return this.inputs.track(counted);
  }

  /** What every hook of `plugin` receives; `signal` is the call's own (aborted at its time-out), joined with IMS's stop. */
  contextFor(plugin: Plugin, signal: AbortSignal): HookContext {
    const { state, now } = this.inputs;
    const config = this.inputs.config();
    return {
      config: config.config, slack: this.inputs.slack, log: this.inputs.log.child(plugin.name), botUserId: this.inputs.botUserId(),
      signal: AbortSignal.any([signal, this.inputs.stopped]),
      outbox: {
        enqueue: async ({ key, group, payload }) => {
          const queued = await state.enqueue(plugin.name, key, group, payload, now());
          if (queued) this.inputs.kickOutbox();
          return queued;
        },
      },
      incidents: {
        bySource: (channel, ts) => state.incidentBySource(channel, ts),
        byPost: (channel, ts) => state.incidentByPost(channel, ts),
        byId: (id) => state.incidentById(id),
        list: (filter) => state.listIncidents(filter),
        events: (id) => state.incidentEvents(id),
      },
      reportChannel: config.report.channel,
      ownChannel: (channel) => {
        this.inputs.pluginChannels.add(channel);
        return state.ownChannel(channel, plugin.name);
      },
      store: {
        get: <T>(key: string) => state.storeGet(plugin.name, key) as Promise<T | undefined>,
        set: (key, value) => state.storeSet(plugin.name, key, value),
        read: <T>(name: string, key: string) => state.storeGet(name, key) as Promise<T | undefined>,
      },
      permalink: (channel, ts) => this.inputs.permalink(channel, ts),
      compiled: config,
      names: this.inputs.names,
      leading: () => this.inputs.leading(),
    };
  }
}
