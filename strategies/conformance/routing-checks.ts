import type tap from 'tap';
import type { ResourceEntry } from '../clustering-strategy';
import { bareOf, type SimulatedCluster, type View } from './simulated-cluster';

export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0];

/** Asked about in every check: nobody ever binds them. */
const NOBODY = 'nobody@example.net';

/**
 * Every promise of ClusteringStrategy, checked for `view` against the truth in `cluster`. Each
 * assertion compares with the truth, so a strategy that breaks a promise fails it; the failure
 * names the users and nodes concerned.
 */
export function expectRouting(t: TapTest, cluster: SimulatedCluster, view: View, when: string): void {
  const { strategy, ctx } = view;
  const local = ctx.localNode;
  const sessions = cluster.reachable(view);
  const remote = sessions.filter((e) => e.node !== local);
  const users = [...new Set([...cluster.jids].map(bareOf)), NOBODY];
  const jids = [...cluster.jids, `${NOBODY}/r`];
  const routes: Route[] = [
    ...users.map((bare) => route(`nodesForUser(${bare})`, strategy.nodesForUser(bare), remote.filter((e) => bareOf(e.jid) === bare))),
    ...jids.map((full) => route(`nodesForResource(${full})`, strategy.nodesForResource(full), remote.filter((e) => e.jid === full))),
  ];

  t.same(problems(routes, (r) => r.holders.filter((node) => !r.listed.includes(node))), {},
    `${when}: every peer that holds a session is listed (missing peers shown)`);
  t.same(problems(routes, (r) => r.listed.filter((node) => node === local)), {},
    `${when}: this node (${local}) is never listed`);
  t.same(problems(routes, (r) => r.listed.filter((node) => node !== local && !ctx.peers.has(node))), {},
    `${when}: only peers whose link is up are listed`);
  t.same(problems(routes, (r) => r.listed.filter((node, i) => r.listed.indexOf(node) !== i)), {},
    `${when}: no peer is listed twice (it would get the stanza twice)`);

  const remoteResources = Object.fromEntries(users.map((bare) => [bare, comparable(strategy.remoteResources(bare))]));
  if (strategy.knowsRemoteSessions) {
    t.same(problems(routes, (r) => (r.holders.length === 0 ? r.listed : [])), {},
      `${when}: a user or resource on no peer gets no destinations (knowsRemoteSessions)`);
    const expected = Object.fromEntries(users.map((bare) => [bare, comparable(remote.filter((e) => bareOf(e.jid) === bare))]));
    t.same(remoteResources, expected, `${when}: remoteResources lists exactly the remote sessions, with current presence (knowsRemoteSessions)`);
  } else {
    t.same(remoteResources, Object.fromEntries(users.map((bare) => [bare, []])), `${when}: remoteResources is [] (knowsRemoteSessions is false)`);
  }

  const snapshot = strategy.snapshot();
  t.same(snapshot.filter((e) => e.node !== local).map((e) => `${e.jid} on ${e.node}`), [],
    `${when}: the snapshot holds only this node's sessions`);
  if (strategy.knowsRemoteSessions) {
    // A peer's map of this node is built from the snapshot alone (cluster-sessions' sync).
    t.same(comparable(snapshot), comparable(sessions.filter((e) => e.node === local)),
      `${when}: the snapshot holds every session of this node, with current presence (knowsRemoteSessions)`);
  }

  const stats = strategy.stats();
  t.ok(typeof stats === 'object' && stats !== null && !Array.isArray(stats), `${when}: stats() returns an object`);
  t.same(Object.entries(stats ?? {}).filter(([, value]) => typeof value !== 'number' || !Number.isFinite(value)), [],
    `${when}: every figure of stats() is a finite number`);
}

/** One question to the strategy: what it listed, and the peers that really hold the sessions. */
interface Route {
  name: string;
  listed: string[];
  holders: string[];
}

function route(name: string, listed: string[], held: ResourceEntry[]): Route {
  return { name, listed, holders: [...new Set(held.map((e) => e.node))].sort() };
}

/** For each route, what `find` objects to; routes with nothing wrong are left out. */
function problems(routes: Route[], find: (route: Route) => string[]): Record<string, string[]> {
  const found: Record<string, string[]> = {};
  for (const r of routes) {
    const wrong = find(r);
    if (wrong.length > 0) found[r.name] = wrong;
  }
  return found;
}

/** Entries reduced to the interface's fields, in a stable order. */
function comparable(entries: ResourceEntry[]): ResourceEntry[] {
  return entries
    .map(({ jid, node, available, priority, boundAt }) => ({ jid, node, available, priority, boundAt }))
    .sort((a, b) => a.jid.localeCompare(b.jid) || a.node.localeCompare(b.node));
}
