import { randomBytes } from 'node:crypto';

/**
 * Ids that name the node that made them (`<random>.<base64url(node)>`): a BOSH sid, an XEP-0198
 * resumption id. Whichever node a client reaches can tell, from the id alone, which node holds
 * the session.
 */
export function nodeTaggedId(randomByteCount: number, node: string): string {
  return `${randomBytes(randomByteCount).toString('base64url')}.${Buffer.from(node, 'utf8').toString('base64url')}`;
}

/** The node named in such an id, or undefined for an id that names none. */
export function nodeOfId(id: string): string | undefined {
  const dot = id.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const owner = Buffer.from(id.slice(dot + 1), 'base64url').toString('utf8');
  return owner === '' ? undefined : owner;
}
