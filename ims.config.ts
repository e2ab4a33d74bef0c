// The default IMS configuration: edit the channel IDs and rules, or run
// `npx tsx ims.ts --config IMS.ini --print-config > ims.config.ts` to migrate a legacy IMS.ini.
import { defineConfig } from './ims.ts';
import { pin } from './plugins/pin.ts';

export default defineConfig({
  timezone: 'UTC',
  rules: [
    // Nightly backup noise between 01:00 and 04:59 is not an incident.
    { match: /backup/i, when: / 0[1-4]:/, suppress: true, head: '[Backup]', incident: 'INFRA' },
    { match: /PROBLEM .*(CRITICAL|DOWN)|Severity: (High|Disaster)/, head: '[Critical]', incident: 'INFRA', hotline: 'OnCallInfra' },
    { match: /\[FIRING:\d+\].*critical|Triggered: \[P1\]|ALARM/, head: '[Critical]', incident: 'APPS', hotline: 'OnCallApps' },
    { match: '(?i)error|fatal|exception', head: '[Error]', incident: 'APPS' },
    { match: /WARNING|Warn:|Severity: Warning/, head: '[Warn]', incident: 'INFRA' },
  ],
  incidents: {
    INFRA: { channel: 'C0INCINFRA' },
    APPS: { channel: 'C0INCAPPS' },
  },
  reverseDefault: { channel: 'C0INCDEFLT', header: '[Alert]' },
  resolvedReactions: ['white_check_mark', 'heavy_check_mark'],
  report: { channel: 'C0REPORT01', schedule: '0 9 * * 1-5', window: '7d' },
  posters: ['B0NAGIOS1', 'B0ZABBIX1', 'B0PROMAM1', 'B0DATADOG', 'B0CLOUDW1', 'B0SENTRY1'],
  hotlines: {
    OnCallInfra: ['U0ONCALL1', 'here'],
    OnCallApps: ['U0ONCALL2'],
  },
  reminders: [{ channel: 'C0REPORT01', hours: ['0[89]', '1[0-7]'] }],
  plugins: [pin()],
});
