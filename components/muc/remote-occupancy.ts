import type { Affiliation } from './affiliations';

export interface RemoteSeat {
  room: string;
  /** The user's full JID (on this node). */
  jid: string;
  nick: string;
  affiliation: Affiliation;
}

/**
 * On a user's own node: which of its users sit in which rooms on which other node (the room's
 * owner tells, as they enter, change nick or affiliation, and leave). When that owner is lost,
 * this node tells them (XEP-0045 status 333) so they can rejoin the room's new owner at once.
 */
export class RemoteOccupancy {
  /** owner node -> room -> full JID -> seat */
  private readonly byOwner = new Map<string, Map<string, Map<string, RemoteSeat>>>();

  /** A seat taken or changed (nick given) or given up (no nick). */
  update(owner: string, room: string, jid: string, nick?: string, affiliation?: Affiliation): void {
    let rooms = this.byOwner.get(owner);
    if (nick === undefined) {
      const seats = rooms?.get(room);
      seats?.delete(jid);
      if (seats?.size === 0) rooms!.delete(room);
      if (rooms?.size === 0) this.byOwner.delete(owner);
      return;
    }
    if (!rooms) this.byOwner.set(owner, (rooms = new Map()));
    let seats = rooms.get(room);
    if (!seats) rooms.set(room, (seats = new Map()));
    seats.set(jid, { room, jid, nick, affiliation: affiliation ?? 'none' });
  }

  /** Forgets the seats in `room` as served by `owner` (it handed the room to another node). */
  forgetRoom(owner: string, room: string): void {
    const rooms = this.byOwner.get(owner);
    rooms?.delete(room);
    if (rooms?.size === 0) this.byOwner.delete(owner);
  }

  /** Every seat in rooms served by `owner`, forgotten as they are returned. */
  take(owner: string): RemoteSeat[] {
    const rooms = this.byOwner.get(owner);
    this.byOwner.delete(owner);
    if (!rooms) return [];
    return [...rooms.values()].flatMap((seats) => [...seats.values()]);
  }

  get size(): number {
    let n = 0;
    for (const rooms of this.byOwner.values()) for (const seats of rooms.values()) n += seats.size;
    return n;
  }
}
