import { readFileSync } from 'node:fs';
import t from 'tap';
import { PromMetrics } from '../../src/telemetry/metrics.js';

/** The dashboard shipped in deploy/ names only series the gateway exposes (a renamed metric would leave a panel empty). */
t.test('every series the Grafana dashboard queries is one the gateway exposes', async (t) => {
  const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/fhir-binary-gateway.json', import.meta.url), 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
  };
  const metrics = new PromMetrics('0.0.0');
  // The figures the composition root adds (src/app/server.ts).
  for (const name of [
    'fbg_audit_queue_records',
    'fbg_audit_records_dropped_total',
    'fbg_audit_events_posted_total',
    'fbg_audit_events_dropped_total',
  ])
    metrics.observe(name, 'x', name.endsWith('_total') ? 'counter' : 'gauge', () => 0);
  // Every declared metric (a labelled one has no sample until observed), histograms with their series.
  const exposed = new Set(
    (await metrics.scrape()).body.split('\n').flatMap((l) => {
      const m = /^# TYPE ([a-z0-9_:]+) (\w+)$/.exec(l);
      if (!m) return [];
      return m[2] === 'histogram' ? [`${m[1]}_bucket`, `${m[1]}_count`, `${m[1]}_sum`] : [m[1]];
    }),
  );
  const queried = dashboard.panels.flatMap((p) => p.targets.flatMap((x) => x.expr.match(/fbg_[a-z0-9_]+/g) ?? []));
  t.ok(queried.length > 20, `${queried.length} series queried`);
  for (const name of new Set(queried)) t.ok(exposed.has(name), `${name} is exposed`);
  t.ok(dashboard.panels.length >= 10);
});
