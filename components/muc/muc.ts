import { Element } from 'ltx';
import { MessageArchive } from '../../server/sm/archive';
import { answerQuery, queryForm } from '../../server/modules/mam';
import { StanzaError } from '../../server/errors';
import { tryParseJID, type JID } from '../../server/jid';
import { STORAGE_LIMITS } from '../../server/storage/limits';
import { NS } from '../../server/xml/ns';
import type { Component, ComponentContext } from '../component';
import { adminGet, adminSet } from './admin-handler';
import { isAffiliation } from './affiliations';
import { STATUS, evictAll, removeOccupant } from './broadcast';
import { roomInfo, roomItems, serviceInfo, serviceItems } from './disco';
import { KeyedQueue } from '../../server/keyed-queue';
import { handleMessage } from './message-handler';
import type { MucContext } from './muc-context';
import { MucStore } from './muc-store';
import { readMucOptions, type MucOptions } from './options';
import { Outbox } from './outbox';
import { ownerGet, ownerSet } from './owner-handler';
import { handleOccupantPresence } from './presence-handler';
import { RemoteOccupancy } from './remote-occupancy';
import { roomFromElement, roomToElement } from './handoff';
import { Room } from './room';
import { defaultConfig, parseStoredConfig } from './room-config';

/** Cluster messages of this component (namespaced per component by ComponentCluster). */
const OP = {
  /** Owner -> a user's node: the user entered (nick), changed, or left (no nick) a room. */
  occupant: 'occupant',
  /** Any node -> a peer: your public rooms of a domain (for disco#items). */
  rooms: 'rooms',
  /** A stopping owner -> its successor (request): serve this room from now on, occupants and all. */
  handoff: 'handoff',
  /** The stopping owner -> its successor, after the hand-over: every stanza for the room that came to me has been forwarded to you. */
  handoffDone: 'handoff-done',
} as const;

/** How long disco#items waits for a peer's list of temporary public rooms [1000 ms]. */
const ROOM_LIST_TIMEOUT_MS = 1000;
/** How long stop() waits for goodbye presences, hand-over echoes and pending writes [10000 ms]: a busy node needs more than a quiet one. */
const STOP_DRAIN_MS = 10_000;
/** How long a stopping node waits for a successor to take a room before evicting its occupants [5000 ms]. */
const HANDOFF_TIMEOUT_MS = 5000;
/** Longest a room taken over holds stanzas that did not come through its previous owner, waiting for that owner's handoff-done [5000 ms]. */
const HANDOFF_FENCE_MS = 5000;

/** A room taken over, whose previous owner still forwards what reached it first (see MucComponent.fence). */
interface Fence {
  from: string;
  since: number;
  /** Stanzas the previous owner forwarded while the fence stood. */
  forwarded: number;
  lift: () => void;
}

/** The queue of what a room's previous owner forwards while the room is fenced. */
const fenced = (room: string) => `${room}\0forwarded`;

export function createMuc(ctx: ComponentContext): Component {
  return new MucComponent(ctx);
}

/**
 * XEP-0313 for rooms: outcasts may not read the archive, and a members-only room's archive is for
 * its members and occupants.
 */
function mayReadArchive(room: Room, from: JID): void {
  const affiliation = room.affiliationOf(from.bareString());
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this room');
  if (room.config.membersOnly && affiliation === 'none' && !room.occupantOfSession(from.toString())) {
    throw new StanzaError('forbidden', 'this room\'s archive is for its members');
  }
}

/**
 * XEP-0045 multi-user chat at muc.<vhost>. Every stanza for a room goes through the room's queue
 * (one at a time, in arrival order). In a cluster, the room's owner node (ComponentCluster.ownerOf)
 * serves it; other nodes forward to it and remember which of their users sit in rooms elsewhere,
 * so they can tell them (status 333) when that owner is lost.
 */
class MucComponent implements Component {
  private readonly options: MucOptions;
  private readonly rooms = new Map<string, Room>();
  private readonly queue = new KeyedQueue();
  /** Rooms taken over whose previous owner has not yet said it forwarded everything, by room JID. */
  private readonly fences = new Map<string, Fence>();
  private readonly writes = new KeyedQueue();
  private readonly outbox: Outbox;
  private readonly store: MucStore;
  private readonly remote = new RemoteOccupancy();
  private readonly mc: MucContext;
  private readonly localNode: string;
  private readonly archive: MessageArchive;

  constructor(private readonly ctx: ComponentContext) {
    this.options = readMucOptions(ctx);
    this.store = new MucStore(ctx.storage.knex);
    this.outbox = new Outbox(ctx.router, ctx.logger);
    this.localNode = ctx.cluster?.localNode ?? 'local';
    const { cluster, logger } = ctx;
    this.archive = new MessageArchive(ctx.storage, logger, ctx.archiveBacklog, 'rooms');
    this.mc = {
      archive: this.archive,
      options: this.options,
      admins: { has: (bare: string) => ctx.config.admins.includes(bare) },
      logger,
      store: this.store,
      send: (stanza, from, to) => this.outbox.send(stanza, from, to),
      persist: (room, what, write) =>
        this.writes.run(room.jidString, write).catch((err) => logger.error('room not stored', { room: room.jidString, what, err: String(err) })),
      occupancy: (room, session, nick, affiliation) => {
        if (!cluster || session.home === cluster.localNode) return;
        const attrs: Record<string, string> = { room: room.jidString, jid: session.jid.toString() };
        if (nick !== undefined) Object.assign(attrs, { nick, affiliation: affiliation ?? 'none' });
        cluster.send(session.home, OP.occupant, undefined, attrs);
      },
      create: (jid) => {
        const room = new Room(jid, defaultConfig(this.options));
        this.rooms.set(room.jidString, room);
        return room;
      },
      forget: async (room) => {
        if (this.rooms.get(room.jidString) === room) this.rooms.delete(room.jidString);
        await cluster?.release(room.jidString).catch((err) => logger.warn('room claim not released', { room: room.jidString, err: String(err) }));
      },
    };
    if (cluster) {
      cluster.handle(OP.occupant, (node, message) => {
        const { room, jid, nick, affiliation } = message.attrs as Record<string, string | undefined>;
        if (room && jid) this.remote.update(node, room, jid, nick, isAffiliation(affiliation) ? affiliation : 'none');
      });
      cluster.handle(OP.rooms, (_node, message) => this.localPublicRooms(message.attrs.domain ?? '').map((r) => new Element('room', r)));
      cluster.handle(OP.handoff, (node, message) => this.takeOver(node, message));
      cluster.handle(OP.handoffDone, (node, message) => {
        const room = message.attrs.room as string | undefined;
        if (room && this.fences.get(room)?.from === node) this.liftFence(room, 'handoff-done');
      });
      // Our users' seats in a room its stopping owner handed over: the new owner tells us afresh.
      cluster.onMoved((room, from) => this.remote.forgetRoom(from, room));
      cluster.onNodeDown((node) => this.nodeDown(node));
      cluster.onNodeUp((node) => this.nodeUp(node));
    }
  }

  async handle(stanza: Element, from: JID, to: JID, forwardedBy?: string, home?: string): Promise<void> {
    if (to.local === '') return this.serviceStanza(stanza, from, to);
    const key = to.bareString();
    // What the previous owner of a room taken over forwards goes ahead of the rest (see fence()).
    const fence = this.fences.get(key);
    if (fence && fence.from === forwardedBy) {
      fence.forwarded++;
      return this.queue.run(fenced(key), () => this.roomStanza(stanza, from, to, forwardedBy, home));
    }
    return this.queue.run(key, () => this.roomStanza(stanza, from, to, forwardedBy, home));
  }

  /**
   * The node stops. In a cluster each room goes to a surviving node, live (occupants stay in it,
   * nobody rejoins); a room nobody can take, or a node alone, sends XEP-0045 status 332 to
   * everyone in it, so they rejoin wherever the room goes next.
   */
  async stop(): Promise<void> {
    for (const room of [...this.rooms.values()]) {
      await this.queue.run(room.jidString, async () => {
        if (this.rooms.get(room.jidString) !== room) return;
        if (await this.handOff(room)) return;
        evictAll(this.mc, room, STATUS.SHUTDOWN);
        this.rooms.delete(room.jidString);
        if (!room.config.persistent) await this.ctx.cluster?.release(room.jidString).catch(() => undefined);
      });
    }
    await Promise.race([Promise.all([this.outbox.idle(), this.writes.idle(), this.archive.flush()]), new Promise((resolve) => setTimeout(resolve, STOP_DRAIN_MS).unref())]);
  }

  // ---- rooms ----

  private async roomStanza(stanza: Element, from: JID, to: JID, forwardedBy?: string, home?: string): Promise<void> {
    try {
      const cluster = this.ctx.cluster;
      if (cluster) {
        const owner = await cluster.ownerOf(to.bareString());
        // The owner serves. A forwarder that is itself the owner the database names had a stale
        // view of us: serve it here rather than send it back and forth. A stanza forwarded here
        // for a room this node has handed over goes on, naming the user's node.
        if (owner !== cluster.localNode && owner !== forwardedBy) {
          if (!cluster.forward(owner, stanza, from, to, home ?? forwardedBy)) throw new StanzaError('remote-server-timeout', 'the node serving this room cannot be reached');
          return;
        }
      }
      await this.roomStanzaHere(stanza, from, to, home ?? forwardedBy ?? this.localNode);
    } catch (err) {
      this.ctx.router.replyError(stanza, err);
    }
  }

  private async roomStanzaHere(stanza: Element, from: JID, to: JID, home: string): Promise<void> {
    const jid = to.bare();
    const room = this.rooms.get(jid.toString()) ?? (await this.load(jid));
    switch (stanza.name) {
      case 'presence':
        return this.presence(room, stanza, from, to, home);
      case 'message':
        if (!room) {
          if (stanza.attrs.type === 'error') return;
          throw new StanzaError('item-not-found', 'no such room');
        }
        return handleMessage(this.mc, room, stanza, from, to);
      case 'iq':
        return this.iq(room, stanza, from, to);
    }
  }

  private async presence(existing: Room | undefined, stanza: Element, from: JID, to: JID, home: string): Promise<void> {
    const type = stanza.attrs.type as string | undefined;
    if (to.resource === '') {
      // §7.2 (error conditions): entering without a nickname is jid-malformed.
      if (type === undefined) throw new StanzaError('jid-malformed', 'a nickname is required to enter a room');
      return;
    }
    let room = existing;
    let created = false;
    if (!room) {
      if (type !== undefined) return; // leaving or bouncing a room that does not exist
      // §10.1.1: a user who may not create rooms gets not-allowed.
      if (this.options.roomCreation === 'admins' && !this.mc.admins.has(from.bareString())) {
        throw new StanzaError('not-allowed', 'only administrators create rooms here');
      }
      if (to.bareString().length > STORAGE_LIMITS.jid) throw new StanzaError('not-acceptable', 'the room address is too long');
      room = this.mc.create(to.bare());
      room.setAffiliation(from.bareString(), 'owner');
      // §10.1.2: a client that speaks MUC gets a locked room to configure (or accept as instant);
      // one that does not (no <x/>) gets an instant room at once.
      room.locked = stanza.getChild('x', NS.MUC) !== undefined;
      created = true;
    }
    const rawNick = (stanza.attrs.to as string).slice((stanza.attrs.to as string).indexOf('/') + 1);
    try {
      await handleOccupantPresence(this.mc, room, stanza, from, to.resource, { created, nickModified: rawNick !== to.resource, home });
    } catch (err) {
      if (created) await this.mc.forget(room);
      throw err;
    }
    if (created && !room.locked && room.config.persistent) {
      const saved = room;
      await this.mc.persist(room, 'room', () => this.store.save(saved.toStored(), saved.config, saved.jid.domain));
    }
  }

  private async iq(room: Room | undefined, stanza: Element, from: JID, to: JID): Promise<void> {
    const type = stanza.attrs.type as string;
    if (type !== 'get' && type !== 'set') return;
    const payload = stanza.getChildElements()[0];
    const xmlns = payload?.attrs.xmlns as string | undefined;
    let reply: Element | null = null;
    if (to.resource !== '') {
      // XEP-0410 self-ping: an occupant asks its own room/nick whether it is still in the room.
      const occupant = room?.occupantOfSession(from.toString());
      if (type === 'get' && payload?.is('ping', NS.PING)) {
        if (!occupant || occupant.nick !== to.resource) throw new StanzaError('not-acceptable', 'you are not this occupant');
      } else {
        throw new StanzaError('feature-not-implemented', 'IQs to occupants are not relayed');
      }
    } else {
      const owner = room?.affiliationOf(from.bareString()) === 'owner';
      if (!room || (room.locked && !owner)) throw new StanzaError('item-not-found', 'no such room');
      const route = `${type} ${xmlns} ${payload?.name}`;
      switch (route) {
        case `get ${NS.DISCO_INFO} query`:
          if (payload.attrs.node) throw new StanzaError('item-not-found');
          reply = roomInfo(room);
          break;
        case `get ${NS.DISCO_ITEMS} query`:
          if (payload.attrs.node) throw new StanzaError('item-not-found');
          reply = roomItems(room);
          break;
        case `get ${NS.MUC_ADMIN} query`:
          reply = adminGet(room, payload, from);
          break;
        case `set ${NS.MUC_ADMIN} query`:
          await adminSet(this.mc, room, payload, from);
          break;
        case `get ${NS.MUC_OWNER} query`:
          reply = ownerGet(this.mc, room, payload, from);
          break;
        case `set ${NS.MUC_OWNER} query`:
          await ownerSet(this.mc, room, payload, from);
          break;
        // XEP-0313 §5.1.2: the room's archive, for those who may read the room.
        case `get ${NS.MAM} query`:
          mayReadArchive(room, from);
          reply = queryForm();
          break;
        case `set ${NS.MAM} query`:
          mayReadArchive(room, from);
          await this.archive.flush();
          reply = await answerQuery(this.ctx.storage.archive, room.jidString, payload, from.toString(), (message) => this.mc.send(message, to, from));
          break;
        default:
          throw new StanzaError('service-unavailable');
      }
    }
    const result = new Element('iq', { type: 'result', id: stanza.attrs.id, from: to.toString(), to: from.toString() });
    if (reply) result.cnode(reply);
    this.mc.send(result, to, from);
  }

  /** A persistent room, rebuilt from the database with its configuration, affiliations, subject and history. */
  private async load(jid: JID): Promise<Room | undefined> {
    const stored = await this.store.load(jid.toString(), (json) => parseStoredConfig(json, this.options).historyLength);
    if (!stored) return undefined;
    const room = new Room(jid, parseStoredConfig(stored.configJson, this.options), stored.createdAt);
    for (const a of stored.affiliations) room.affiliations.set(a.jid, { affiliation: a.affiliation, reason: a.reason, nick: a.nick });
    room.subject = stored.subject;
    room.history.load(stored.history);
    this.rooms.set(room.jidString, room);
    this.ctx.logger.debug('room loaded from the database', { room: room.jidString });
    return room;
  }

  // ---- the service itself (muc.<vhost>) ----

  private async serviceStanza(stanza: Element, from: JID, to: JID): Promise<void> {
    try {
      if (stanza.name !== 'iq') return; // presence and messages to the service mean nothing
      const type = stanza.attrs.type as string;
      if (type !== 'get' && type !== 'set') return;
      const payload = stanza.getChildElements()[0];
      let reply: Element;
      if (to.resource === '' && type === 'get' && payload?.is('query', NS.DISCO_INFO) && !payload.attrs.node) reply = serviceInfo();
      else if (to.resource === '' && type === 'get' && payload?.is('query', NS.DISCO_ITEMS) && !payload.attrs.node) reply = serviceItems(await this.publicRooms(to.domain));
      else throw new StanzaError('service-unavailable');
      const result = new Element('iq', { type: 'result', id: stanza.attrs.id, from: to.toString(), to: from.toString() });
      result.cnode(reply);
      this.mc.send(result, to, from);
    } catch (err) {
      this.ctx.router.replyError(stanza, err);
    }
  }

  /**
   * §6.3 public rooms: persistent ones from the database, plus every node's temporary ones
   * (asked of the peers; a peer that does not answer in time is left out).
   */
  private async publicRooms(domain: string): Promise<{ jid: string; name: string }[]> {
    const found = new Map<string, string>();
    for (const room of await this.store.publicRooms(domain)) found.set(room.jid, room.name);
    for (const room of this.localPublicRooms(domain)) found.set(room.jid, room.name);
    const cluster = this.ctx.cluster;
    if (cluster) {
      const answers = await Promise.all(
        cluster.connectedNodes().map((node) => cluster.request(node, OP.rooms, undefined, { domain }, ROOM_LIST_TIMEOUT_MS).catch(() => undefined)),
      );
      for (const answer of answers) {
        for (const room of answer?.getChildren('room') ?? []) if (room.attrs.jid) found.set(room.attrs.jid, room.attrs.name ?? '');
      }
    }
    return [...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([jid, name]) => ({ jid, name }));
  }

  private localPublicRooms(domain: string): { jid: string; name: string }[] {
    return [...this.rooms.values()]
      .filter((room) => room.jid.domain === domain && room.config.public && !room.locked && !room.destroyed)
      .map((room) => ({ jid: room.jidString, name: room.config.name }));
  }

  /** A task in the room's queue that nobody awaits: a failure is logged, never an unhandled rejection. */
  private background(room: Room, what: string, task: () => Promise<void>): void {
    this.queue.run(room.jidString, task).catch((err) => this.ctx.logger.error(`room task failed: ${what}`, { room: room.jidString, err: String((err as Error)?.stack ?? err) }));
  }

  // ---- hand-over when a node stops ----

  /**
   * Gives `room` (in its queue) to the successor the hash picks among the surviving nodes: this
   * node's own users are gone by now (their connections closed first), so whoever is seated from
   * here leaves as on a lost node; the rest move with the room. True when the room is off this node.
   */
  private async handOff(room: Room): Promise<boolean> {
    const cluster = this.ctx.cluster;
    const to = cluster?.successorOf(room.jidString);
    if (!cluster || !to) return false;
    for (const occupant of [...room.occupants.values()]) {
      const gone = [...occupant.sessions.values()].filter((s) => s.home === cluster.localNode);
      if (gone.length === occupant.sessions.size) await removeOccupant(this.mc, room, occupant, { statuses: [STATUS.TECHNICAL] });
      else for (const session of gone) room.removeSession(occupant, session.jid.toString());
    }
    if (room.occupants.size === 0) {
      // Nothing live to move: a persistent room is rebuilt from the database where it is next
      // used (the claim is given up with the node's others); a temporary one ends.
      this.rooms.delete(room.jidString);
      if (!room.config.persistent) await this.mc.forget(room);
      return true;
    }
    try {
      await cluster.request(to, OP.handoff, roomToElement(room), { fence: '1' }, HANDOFF_TIMEOUT_MS);
    } catch (err) {
      this.ctx.logger.warn('room not handed over; its occupants are told to rejoin', { room: room.jidString, to, err: String((err as Error)?.message ?? err) });
      return false;
    }
    // From here `to` serves it: stanzas queued behind this task are forwarded there.
    this.rooms.delete(room.jidString);
    if (!(await cluster.handOver(room.jidString, to).catch(() => false))) {
      this.ctx.logger.warn('room handed over, but its claim had moved meanwhile', { room: room.jidString, to });
    }
    // Every peer now sends to `to`, and what each sent here before is queued behind this task, to
    // be forwarded there: the word that all of it went follows it on the same link.
    this.background(room, 'end of a hand-over', async () => {
      cluster.send(to, OP.handoffDone, undefined, { room: room.jidString });
    });
    this.ctx.logger.info('room handed over', { room: room.jidString, to, occupants: room.occupants.size });
    return true;
  }

  /** A stopping owner hands us a live room: serve it from now on, and tell its users' nodes. */
  private async takeOver(from: string, message: Element): Promise<Element> {
    const room = roomFromElement(message.getChildElements()[0] ?? new Element('none'), this.options);
    if (!room) throw new Error('not a room');
    const taken = this.queue.run(room.jidString, async () => {
      const stale = this.rooms.get(room.jidString);
      if (stale) this.ctx.logger.warn('replacing a stale copy of a room handed over to this node', { room: room.jidString, from });
      this.rooms.set(room.jidString, room);
      this.ctx.cluster?.tookOver(room.jidString);
      for (const [occupant, session] of room.sessions()) {
        this.mc.occupancy(room, session, occupant.nick, room.affiliationOf(occupant.bare));
      }
    });
    if (message.attrs.fence === '1') this.fence(room.jidString, from);
    await taken;
    return new Element('taken', { room: room.jidString });
  }

  /**
   * A room taken over from `from`: stanzas for it may still reach `from` (sent before their node
   * heard of the move, or in flight) and be forwarded here, behind later ones that came straight
   * here over other links. So until `from` says it forwarded everything (handoff-done, sent once
   * every peer has switched), or its link is lost, or HANDOFF_FENCE_MS pass, what `from` forwards
   * is served first, in its own queue, and everything else for the room waits, in order, behind
   * it. Queued right behind the take-over itself, so nothing slips in between.
   */
  private fence(room: string, from: string): void {
    this.liftFence(room, 'taken over again');
    let lift!: () => void;
    const lifted = new Promise<void>((resolve) => (lift = resolve));
    const timer = setTimeout(() => this.liftFence(room, 'timeout'), HANDOFF_FENCE_MS).unref();
    this.fences.set(room, { from, since: Date.now(), forwarded: 0, lift: () => { clearTimeout(timer); lift(); } });
    // Once lifted, the room's queue goes on after the last stanza forwarded has been served.
    void this.queue.run(room, () => lifted.then(() => this.queue.run(fenced(room), () => undefined)));
  }

  private liftFence(room: string, reason: string): void {
    const fence = this.fences.get(room);
    if (!fence) return;
    this.fences.delete(room);
    fence.lift();
    this.ctx.logger.info('room hand-over complete', { room, from: fence.from, reason, forwarded: fence.forwarded, ms: Date.now() - fence.since });
  }

  // ---- cluster events ----

  /**
   * A node is gone. Its own users left every room here (unavailable, 333, to the others). Our users
   * in rooms it served are told they are out (110 + 333) and may rejoin at once: the room's next
   * stanza makes a survivor its owner, which rebuilds a persistent room from the database.
   */
  private nodeDown(node: string): void {
    for (const [room, fence] of [...this.fences]) if (fence.from === node) this.liftFence(room, 'its previous owner is gone');
    const seats = this.remote.take(node);
    for (const seat of seats) {
      const roomJid = tryParseJID(seat.room);
      const user = tryParseJID(seat.jid);
      if (!roomJid || !user) continue;
      const from = roomJid.withResource(seat.nick);
      const presence = new Element('presence', { type: 'unavailable', from: from.toString(), to: user.toString() });
      const x = presence.c('x', { xmlns: NS.MUC_USER });
      x.c('item', { affiliation: seat.affiliation, role: 'none' });
      x.c('status', { code: String(STATUS.SELF) });
      x.c('status', { code: String(STATUS.TECHNICAL) });
      this.outbox.send(presence, from, user);
    }
    if (seats.length > 0) this.ctx.logger.info('rooms lost with their node; occupants told', { peer: node, occupants: seats.length });
    for (const room of [...this.rooms.values()]) {
      this.background(room, 'dropping a lost node\'s users', async () => {
        for (const occupant of [...room.occupants.values()]) {
          const lost = [...occupant.sessions.values()].filter((s) => s.home === node);
          if (lost.length === 0) continue;
          if (lost.length === occupant.sessions.size) {
            await removeOccupant(this.mc, room, occupant, { statuses: [STATUS.TECHNICAL] });
          } else {
            for (const session of lost) room.removeSession(occupant, session.jid.toString());
          }
        }
      });
    }
  }

  /**
   * A node is back (a restart, or a healed partition). Rooms are never split: for every room held
   * here, the claim in the database decides; a room now claimed by another node is dropped, and its
   * occupants are told (110 + 333) so they rejoin the real owner.
   */
  private nodeUp(_node: string): void {
    const cluster = this.ctx.cluster!;
    for (const room of [...this.rooms.values()]) {
      this.background(room, 'checking the room\'s owner', async () => {
        if (this.rooms.get(room.jidString) !== room) return;
        const claimed = await this.store.claimedOwner(this.ctx.name, room.jidString).catch(() => undefined);
        if (claimed === undefined || claimed === cluster.localNode) return;
        this.ctx.logger.warn('room is served by another node; dropping this copy', { room: room.jidString, owner: claimed });
        evictAll(this.mc, room, STATUS.TECHNICAL);
        this.rooms.delete(room.jidString);
        // Forgets this node's cached claim; the row (the other node's) stays.
        await cluster.release(room.jidString);
      });
    }
  }
}
