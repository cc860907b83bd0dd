/** Namespace of the inter-node stream on --cluster-port. */
export const CLUSTER_NS = 'urn:xmpp-cluster-server:cluster';

/**
 * Link protocol version, major.minor. Nodes of the same major version interoperate (rolling
 * upgrades); a minor bump may only add messages that older nodes can ignore.
 */
export const PROTOCOL_VERSION = '2.0';

export function compatibleVersion(version: string | undefined): boolean {
  if (!version || !/^\d+\.\d+$/.test(version)) return false;
  return version.split('.')[0] === PROTOCOL_VERSION.split('.')[0];
}
