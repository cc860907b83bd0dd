import type { JID } from '../jid';
import type { CapsAnnouncement } from './caps';

/** Other servers' resources remembered at once on a node, at most [100000]; beyond, the longest-known contact's are forgotten first. */
const MAX_REMOTE_RESOURCES = 100_000;

/**
 * The available resources of other servers' entities whose presence reached local users on this
 * node (contacts on other domains), with the caps each announced: whom a PEP notification for a
 * remote contact goes to (XEP-0163 §4.3 across domains). Unavailable presence removes a resource.
 */
export class RemoteResources {
  private readonly byBare = new Map<string, Map<string, CapsAnnouncement | undefined>>();
  private count = 0;

  constructor(private readonly limit = MAX_REMOTE_RESOURCES) {}

  /** Records an available resource; true when it is new or announces another ver than before. */
  available(from: JID, caps: CapsAnnouncement | undefined): boolean {
    const bare = from.bareString();
    let resources = this.byBare.get(bare);
    if (!resources) {
      resources = new Map();
      this.byBare.set(bare, resources);
    }
    const full = from.toString();
    const had = resources.has(full);
    const changed = !had || resources.get(full)?.ver !== caps?.ver;
    resources.set(full, caps);
    if (!had) this.count++;
    while (this.count > this.limit) this.forgetOldest();
    return changed;
  }

  unavailable(from: JID): void {
    const bare = from.bareString();
    const resources = this.byBare.get(bare);
    if (!resources?.delete(from.toString())) return;
    this.count--;
    if (resources.size === 0) this.byBare.delete(bare);
  }

  /** The known available resources of a remote bare JID, with their caps. */
  resources(bare: string): [string, CapsAnnouncement | undefined][] {
    return [...(this.byBare.get(bare) ?? [])];
  }

  private forgetOldest(): void {
    const [bare, resources] = this.byBare.entries().next().value as [string, Map<string, unknown>];
    this.byBare.delete(bare);
    this.count -= resources.size;
  }
}
