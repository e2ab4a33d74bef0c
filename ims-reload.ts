/**
 * Config reload: the config file is watched, and a change is loaded, checked against the workspace and swapped in
 * while IMS runs. A config that is refused is logged with its problems and the last good one keeps running; the
 * reloaded config's schedules replace the old ones, and its fresh plugin instances start as the old ones stop.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { CompiledConfig, HookName, Logger, Plugin } from './ims.ts';
import { ConfigError } from './ims-config-errors.ts';
import { errorText } from './ims-log.ts';

/** What a reload needs from the running IMS. */
export interface ReloadInputs {
  log: Logger;
  config(): CompiledConfig;
  /** Swap the running config. */
  use(config: CompiledConfig): void;
  /** The modes given on the command line (they hold whatever the file says). */
  modes: { reverse?: boolean; reacji?: boolean };
  resolveNames(config: CompiledConfig): Promise<CompiledConfig>;
  /** Whether IMS is running (connected and not stopping): only then do schedules and plugins follow the reload. */
  running(): boolean;
  reconfigureSchedules(): void;
  runHooks(hook: Extract<HookName, 'onStart' | 'onStop'>, plugins: readonly Plugin[]): Promise<unknown>;
  track<T>(work: Promise<T>): Promise<T>;
}

/** Watches the config file and reloads it. */
export class ConfigReload {
  private watcher?: FSWatcher;

  constructor(private readonly inputs: ReloadInputs) {}

  /** Reload on change (debounced: an editor saves in several writes). */
  watch(configPath: string): void {
    const absolute = path.resolve(configPath);
    let debounce: NodeJS.Timeout | undefined;
    this.watcher = watch(path.dirname(absolute), (_event, name) => {
      if (!name || !/\.(ts|mts|js|mjs|cjs|json|ini)$/i.test(name) || /\.db/.test(name)) return;
      clearTimeout(debounce);
      debounce = setTimeout(() => void this.inputs.track(this.reload(absolute, configPath)), 300);
    });
    this.watcher.on('error', (error) => this.inputs.log.warn(`config watch failed: ${error.message}`));
  }

  close(): void {
    this.watcher?.close();
  }

  /** Reload `absolute` (shown as `shown` in logs); true when the new config runs, false when it was refused. */
  async reload(absolute: string, shown = absolute): Promise<boolean> {
    const { log } = this.inputs;
    try {
      const current = this.inputs.config();
      const fresh = await current.engine.loadConfig({ path: absolute, ...this.inputs.modes });
      const resolved = await this.inputs.resolveNames({ ...fresh, source: shown, state: current.state });
      this.inputs.use(resolved);
      log.info(`config reloaded from ${shown}: ${resolved.rules.length} rules`);
      if (this.inputs.running()) {
        this.inputs.reconfigureSchedules();
        // The reloaded config brings fresh plugin instances: retire the old ones, start the new ones.
        const kept = new Set(resolved.plugins);
        await this.inputs.runHooks('onStop', current.plugins.filter((p) => !kept.has(p)));
        const before = new Set(current.plugins);
        await this.inputs.runHooks('onStart', resolved.plugins.filter((p) => !before.has(p)));
      }
      return true;
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [errorText(error)];
      log.error(`config reload refused; still running on the last good config:\n${problems.map((p) => `  ${p}`).join('\n')}`);
      return false;
    }
  }
}
