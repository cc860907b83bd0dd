/**
 * Every kind of message the nodes exchange on their links, in one place (no glued strings
 * elsewhere). On the wire a message is `<m k='KIND' ...attributes>payload</m>`; answers to
 * requests are `<res id/>`; acknowledgements `<a h/>` and heartbeats `<hb/>` belong to the link.
 *
 * Three shapes:
 * - routed (`r='1'`): a stanza for a JID on the receiving node; its outcome (delivered, or missed:
 *   nobody there to take it) comes back in the link's cumulative acknowledgements, and a lost link
 *   counts as missed, so the sender applies RFC 6121's fallback exactly once;
 * - one-way: handled in order per sending node, acknowledged like the rest;
 * - request (`id`): answered with `<res id>`; rejected when the link is lost.
 *
 * A kind this node does not know (a newer minor version) is logged once and acknowledged.
 */
export const LINK = {
  /** Routed: a stanza for a full JID (`mode='resource'`) or a bare JID (`mode='user'`). */
  route: 'route',
  /** One-way: presence broadcast to the available resources of `user`. */
  presence: 'presence',
  /** One-way: answer a presence probe from `from` for this node's resources of `to`. */
  probe: 'probe',
  /** One-way: carbon copies (XEP-0280) for `user`'s resources here, except `exclude`. */
  carbons: 'carbons',
  /** One-way: a roster push (RFC 6121 §2.1.6) for `user`'s interested resources here. */
  rosterPush: 'roster-push',
  /** One-way: `user`'s block list changed (XEP-0191): drop cached copies, push to interested resources. */
  blocklist: 'blocklist',
  /** One-way: `user`'s archive preferences changed (XEP-0313 §7): drop cached copies. */
  archivePrefs: 'archive-prefs',
  /** One-way: a PEP notification (XEP-0163) for the listed users whose caps want `feature`. */
  interested: 'interested',
  /** One-way: messages were stored offline for the listed users: deliver them to any available resource here. */
  offlineStored: 'offline-stored',
  /** One-way: a session of the sending node was bound, changed presence, or ended. */
  session: 'session',
  /** Request: the sessions the receiving node holds (sent when a link comes up). */
  sync: 'sync',
  /** Request: an HTTP request of a BOSH session this node owns (XEP-0124), forwarded by another node. */
  bosh: 'bosh',
  /** Request: hand stream-managed session `id` of `user` over to the asking node, whose client resumed it with `h` (XEP-0198). */
  smResume: 'sm-resume',
  /** Request: an operator's command on the receiving node's sessions (`op` list, end or announce; sm/session-admin.ts). */
  admin: 'admin',
  /** One-way, every second: the sending node's busy client addresses (`<a ip open waiting opened/>`), so connection limits count over the cluster. */
  limits: 'limits',
  /** One-way: item `item` of component `c` is now served by `node` (a stopping node handed it over). */
  owner: 'owner',
  /** One-way or request: a component's own traffic; `c` names the component, `op` its message. */
  component: 'component',
} as const;

export type LinkKind = (typeof LINK)[keyof typeof LINK];

const KINDS = new Set<string>(Object.values(LINK));

export function isLinkKind(kind: string | undefined): kind is LinkKind {
  return kind !== undefined && KINDS.has(kind);
}
