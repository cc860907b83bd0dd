import type { FederationStatus } from '../s2s/federation';

/**
 * /status for people: the same figures as the JSON, as one HTML page that refreshes itself. No
 * script and nothing loaded from elsewhere, so it works behind any proxy and with a strict CSP.
 */

/** How often the page reloads itself [10 s]. */
const REFRESH_SECONDS = 10;

interface LinkRow {
  node: string;
  up: boolean;
  queuedBytes: number;
  unacknowledged: number;
  stanzasIn: number;
  stanzasOut: number;
}

/** The figures of /status (the JSON's fields; the cluster's carry more than the page shows). */
export interface StatusData {
  node: string;
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  serving: boolean;
  sessions: number;
  connections: Record<string, number>;
  stanzas: { in: Record<string, number>; out: Record<string, number> };
  memory: Record<string, number>;
  database: { kind: string; reachable: boolean };
  federation?: FederationStatus;
  cluster: {
    nodes: number; minNodes: number; strategy?: string; nodesKnown?: string[]; nodesDraining?: string[];
    links?: LinkRow[]; linkDrops?: number; rerouted?: number; [more: string]: unknown;
  };
}

export function statusPage(s: StatusData, ready: { ok: boolean; problems: string[] }): string {
  const rows = (pairs: [string, string][]) => pairs.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${v}</td></tr>`).join('');
  const table = (caption: string, body: string) => `<table><caption>${esc(caption)}</caption>${body}</table>`;
  const state = ready.ok
    ? '<p class="state ok" id="state">Ready: serving clients</p>'
    : `<p class="state bad" id="state">Not ready</p><ul id="problems">${ready.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>`;
  const node = table('This node', rows([
    ['Node', esc(s.node)],
    ['Version', esc(s.version)],
    ['Up since', `${esc(s.startedAt)} (${esc(duration(s.uptimeSeconds))})`],
    ['Sessions', esc(String(s.sessions))],
    ['Connections', esc(Object.entries(s.connections).map(([k, v]) => `${k} ${v}`).join(', '))],
    ['Stanzas in', esc(Object.entries(s.stanzas.in).map(([k, v]) => `${k} ${v}`).join(', '))],
    ['Stanzas out', esc(Object.entries(s.stanzas.out).map(([k, v]) => `${k} ${v}`).join(', '))],
    ['Memory', esc(`${mib(s.memory.rss)} resident, ${mib(s.memory.heapUsed)} of ${mib(s.memory.heapTotal)} heap`)],
    ['Database', `${esc(s.database.kind)}, ${s.database.reachable ? 'answers' : '<strong>does not answer</strong>'}`],
  ]));
  const cluster = s.cluster.strategy === undefined
    ? '<p id="cluster">Not clustered.</p>'
    : table('Cluster', rows([
        ['Nodes connected', esc(`${s.cluster.nodes} (at least ${s.cluster.minNodes} to start serving)`)],
        ['Nodes known', esc((s.cluster.nodesKnown ?? []).join(', '))],
        ['Nodes draining', esc((s.cluster.nodesDraining ?? []).join(', ') || 'none')],
        ['Strategy', esc(s.cluster.strategy)],
        ['Links dropped, stanzas rerouted', esc(`${s.cluster.linkDrops ?? 0}, ${s.cluster.rerouted ?? 0}`)],
      ])) +
      `<table id="links"><caption>Links to the other nodes</caption><tr><th>Node</th><th>Link</th><th>Queued bytes</th><th>Unacknowledged</th><th>Stanzas in</th><th>Stanzas out</th></tr>${
        (s.cluster.links ?? []).map((l) => `<tr><td>${esc(l.node)}</td><td>${l.up ? 'up' : '<strong>down</strong>'}</td><td>${l.queuedBytes}</td><td>${l.unacknowledged}</td><td>${l.stanzasIn}</td><td>${l.stanzasOut}</td></tr>`).join('')
      }</table>`;
  const f = s.federation;
  const federation = !f
    ? '<p id="federation">Federation is off (no --s2s-ports).</p>'
    : `<table id="federation"><caption>Other servers (federation)</caption><tr><th>Domain</th><th>Direction</th><th>State</th><th>Queued</th></tr>${
      [
        ...f.outgoing.map((o) => `<tr><td>${esc(o.remote)}</td><td>outgoing (from ${esc(o.local)})</td><td>${esc(o.state)}</td><td>${o.queued}</td></tr>`),
        ...f.incoming.map((i) => `<tr><td>${esc(i.remote)}</td><td>incoming</td><td>${esc(i.address)}</td><td></td></tr>`),
      ].join('') || '<tr><td colspan="4">none</td></tr>'
    }</table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(s.node)}: XMPP node status</title>
<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:60em;color:#222}table{border-collapse:collapse;margin:1em 0;width:100%}
caption{text-align:left;font-weight:bold;padding:.3em 0}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd}th[scope=row]{width:14em;font-weight:normal;color:#555}
.state{font-size:1.2em;font-weight:bold}.ok{color:#17632a}.bad{color:#a4161a}footer{color:#777;font-size:.85em}</style></head>
<body><h1>${esc(s.node)}</h1>${state}${node}${cluster}${federation}
<footer>Refreshes every ${REFRESH_SECONDS} s. The same as JSON: <a href="status?format=json">/status?format=json</a>; metrics at <a href="metrics">/metrics</a>.</footer>
</body></html>
`;
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min ${seconds % 60} s`;
}
