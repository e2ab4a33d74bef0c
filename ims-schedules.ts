/**
 * What runs on a clock while IMS runs: the report (a cron schedule or every N hours) and the reminder, from the
 * config and replaced on reload; the outbox poll, the retry of pending messages and of failed catch-ups, calming
 * incidents that stopped flapping, and pruning of old state.
 */
import type { CompiledConfig, Logger } from './ims.ts';
import { DAY, HOUR, SECOND, cron } from './ims-time.ts';

type Timer = NodeJS.Timeout | { stop(): void };

/** What the schedules run, and how they are configured beyond the config. */
export interface ScheduleInputs {
  config(): CompiledConfig;
  log: Logger;
  now(): number;
  options: { reports?: boolean; reminders?: boolean; schedule?: string; loopHours?: number; reminderSeconds?: number; outboxIntervalMs?: number; retryPendingMs?: number; silenceSweepMs?: number };
  /** A scheduled report; `slot` names its turn (the same on every instance), so that it is posted once. */
  report(slot: string): Promise<unknown>;
  remind(): Promise<unknown>;
  flushOutbox(): Promise<unknown>;
  /** Retry messages claimed before `claimedBefore` whose handling failed. */
  retryPending(claimedBefore: number): Promise<unknown>;
  /** Catch up again if the last catch-up failed somewhere. */
  retryCatchUp(): void;
  prune(before: number): void;
  /** Calm incidents that stopped flapping without a message to say so. */
  sweepFlapping(now: number): Promise<unknown>;
  /** Open maintenance windows, and summarise silences that are over. */
  sweepSilences(): Promise<unknown>;
  track<T>(work: Promise<T>): Promise<T>;
  /** With several instances: read again what others may have recorded that this one keeps in memory (every 5 s). */
  refreshShared?(): Promise<unknown>;
}

/** The timers of a running IMS: started after start-up, reconfigured on reload, stopped on stop. */
export class Schedules {
  private readonly fixed: Timer[] = [];
  /** Report and reminder timers: replaced when a reload changes the schedule. */
  private configured: Timer[] = [];

  constructor(private readonly inputs: ScheduleInputs) {}

  /** Start every timer; the report and reminder also run once now (as the legacy tool did at start-up). */
  start(): void {
    const { inputs } = this;
    this.startReportAndReminders(true);
    this.fixed.push(setInterval(() => void inputs.track(inputs.flushOutbox()), inputs.options.outboxIntervalMs ?? 1000));
    // A message whose handling failed (Slack unreachable, a channel the bot is not in) stays pending: retried until it goes through.
    const retryEvery = inputs.options.retryPendingMs ?? 60_000;
    this.fixed.push(setInterval(() => {
      void inputs.track(inputs.retryPending(inputs.now() - retryEvery));
      inputs.retryCatchUp();
    }, retryEvery));
    this.fixed.push(setInterval(() => inputs.prune(inputs.now() - inputs.config().state.catchUpWindowMs - 7 * DAY), 6 * HOUR));
    this.fixed.push(setInterval(() => void inputs.track(inputs.sweepFlapping(inputs.now())), 60_000));
    // A silence that ended while IMS was down is summarised now; the others within a few seconds of their end.
    void inputs.track(inputs.sweepSilences());
    this.fixed.push(setInterval(() => void inputs.track(inputs.sweepSilences()), inputs.options.silenceSweepMs ?? 5000));
    if (inputs.refreshShared) this.fixed.push(setInterval(() => void inputs.track(inputs.refreshShared!()), 5000));
  }

  /** The config was reloaded: report and reminder timers from the new one. */
  reconfigure(): void {
    this.startReportAndReminders(false);
  }

  stop(): void {
    for (const timer of [...this.fixed, ...this.configured]) 'stop' in timer ? timer.stop() : clearInterval(timer);
    this.fixed.length = 0;
    this.configured = [];
  }

  /** Report and reminder timers from the current config; `firstRun` also runs the legacy start-up report and a reminder check. */
  private startReportAndReminders(firstRun: boolean): void {
    const { inputs } = this;
    for (const timer of this.configured) 'stop' in timer ? timer.stop() : clearInterval(timer);
    this.configured = [];
    const { report, timezone, reminders, reminderIntervalMs } = inputs.config();
    const { options, log } = inputs;
    const report$ = (slot: () => string) => () => void inputs.track(inputs.report(slot()));
    if (options.reports !== false && report.channel) {
      const schedule = options.schedule ?? (options.loopHours === undefined ? report.schedule : undefined);
      if (schedule) {
        // Every instance ticks at the same minute: the minute names the turn.
        const minute = () => `cron ${new Date(Math.round(inputs.now() / 60_000) * 60_000).toISOString()}`;
        this.configured.push(cron().CronJob.from({ cronTime: schedule, timeZone: timezone, start: true, onTick: report$(minute) }));
        log.info(`reports scheduled: '${schedule}'${timezone ? ` (${timezone})` : ''}`);
      } else {
        const hours = options.loopHours ?? report.everyHours ?? 24;
        // Instances started at different times tick at different times: the turn is the interval the tick falls in.
        const interval = () => `every ${hours} h #${Math.floor(inputs.now() / (hours * HOUR))}`;
        this.configured.push(setInterval(report$(interval), hours * HOUR));
        if (firstRun) report$(interval)();
        log.info(`reports every ${hours} h${firstRun ? ', the first now' : ''}`);
      }
    } else if (options.reports !== false) {
      log.warn('no report channel ([Report] / report.channel): scheduled reports are off');
    }
    if (options.reminders !== false && reminders.length) {
      const every = options.reminderSeconds !== undefined ? options.reminderSeconds * SECOND : reminderIntervalMs;
      const remind = () => void inputs.track(inputs.remind());
      this.configured.push(setInterval(remind, every));
      if (firstRun) remind();
    }
  }
}
