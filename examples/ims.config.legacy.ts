// Keep a legacy IMS.ini as it is and add plugins on top: rules, channels, hotlines, report and reminders
// come from the INI file (problems are reported as `IMS.ini:LINE: …`), plugins from here.
//
// ARGUS_URL and ARGUS_TOKEN must be set in the environment (the argus plugin refuses to load otherwise).
import { defineConfig, loadIni } from '../ims.ts';
import { pin } from '../plugins/pin.ts';
import { argus } from '../plugins/argus.ts';
import { stats } from '../plugins/stats.ts';

export default defineConfig({
  ...loadIni(new URL('./IMS.ini', import.meta.url).pathname),
  plugins: [
    // Keep open incidents pinned in their incident channels.
    pin(),
    // Export every incident to Argus; Nagios-style rules that name groups (?P<host>…) add host= tags.
    argus({ tags: { source_config: 'ims_ini' } }),
    // MTTA / MTTR per rule head in every report.
    stats(),
  ],
});
