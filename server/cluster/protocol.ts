/** Namespace of the inter-node stream on --cluster-port. */
export const CLUSTER_NS = 'urn:xmpp-cluster-server:cluster';

/**
 * Link protocol version, major.minor. Nodes of the same major version interoperate (rolling
 * upgrades); a minor bump may only add messages that older nodes can ignore.
 * 2.1 (server 0.2.0): `owner` (an item handed over; a request, answered once the peer has
 * switched) and the MUC's `handoff` and `handoff-done`, all used by a stopping node; a 2.0 peer
 * answers the first with an error, which does as well, refuses the second, and the room's
 * occupants are then told to rejoin (status 332) as before. `limits` (busy client addresses), which a 2.0
 * peer ignores: its connections then count on its own node only. `archive-prefs` (a user's
 * archive preferences changed), which a 2.0 peer ignores: it caches none.
 */
export const PROTOCOL_VERSION = '2.1';

export function compatibleVersion(version: string | undefined): boolean {
  if (!version || !/^\d+\.\d+$/.test(version)) return false;
  return version.split('.')[0] === PROTOCOL_VERSION.split('.')[0];
}
