import type { Element } from 'ltx';
import { cloneElement } from '../../server/router';
import { NS } from '../../server/xml/ns';

/** One groupchat message as the room broadcast it (from room/nick, no `to`). */
export interface HistoryEntry {
  nick: string;
  /** The sender's real full JID. */
  sender: string;
  stanza: Element;
  stamp: Date;
}

/** What a joining client asked for in `<history/>` (XEP-0045 §7.2, Managing Discussion History); absent fields are no limit. */
export interface HistoryRequest {
  maxchars?: number;
  maxstanzas?: number;
  seconds?: number;
  since?: Date;
}

/** The room's recent messages, oldest first, at most `limit` of them. */
export class History {
  private entries: HistoryEntry[] = [];

  constructor(private limit: number) {}

  get size(): number {
    return this.entries.length;
  }

  setLimit(limit: number): void {
    this.limit = limit;
    this.trim();
  }

  add(entry: HistoryEntry): void {
    this.entries.push(entry);
    this.trim();
  }

  all(): HistoryEntry[] {
    return [...this.entries];
  }

  /** Replaces everything (a room rebuilt from the database). */
  load(entries: HistoryEntry[]): void {
    this.entries = entries;
    this.trim();
  }

  /**
   * XEP-0045 §7.2 (Discussion History): the messages to send to a new occupant, each a copy with a
   * XEP-0203 delay stamp from the room. maxchars counts the characters of the whole XML stanzas.
   */
  select(request: HistoryRequest, roomJid: string, now = new Date()): Element[] {
    let chosen = this.entries;
    if (request.seconds !== undefined) {
      const after = now.getTime() - request.seconds * 1000;
      chosen = chosen.filter((e) => e.stamp.getTime() >= after);
    }
    if (request.since !== undefined) {
      const since = request.since.getTime();
      chosen = chosen.filter((e) => e.stamp.getTime() > since);
    }
    if (request.maxstanzas !== undefined) chosen = request.maxstanzas === 0 ? [] : chosen.slice(-request.maxstanzas);
    const out: Element[] = [];
    let chars = 0;
    // Newest first while counting characters, so the most recent messages are the ones kept.
    for (let i = chosen.length - 1; i >= 0; i--) {
      const entry = chosen[i];
      const copy = cloneElement(entry.stanza);
      copy.c('delay', { xmlns: NS.DELAY, from: roomJid, stamp: entry.stamp.toISOString() });
      if (request.maxchars !== undefined) {
        chars += copy.toString().length;
        if (chars > request.maxchars) break;
      }
      out.push(copy);
    }
    return out.reverse();
  }

  private trim(): void {
    if (this.entries.length > this.limit) this.entries = this.entries.slice(this.entries.length - this.limit);
  }
}

/** Reads `<history/>` from a join's `<x xmlns='http://jabber.org/protocol/muc'/>`; bad numbers are ignored. */
export function parseHistoryRequest(history: Element | undefined): HistoryRequest {
  if (!history) return {};
  const request: HistoryRequest = {};
  const int = (name: 'maxchars' | 'maxstanzas' | 'seconds') => {
    const raw = history.attrs[name];
    if (raw === undefined) return;
    const n = Number(raw);
    if (Number.isInteger(n) && n >= 0) request[name] = n;
  };
  int('maxchars');
  int('maxstanzas');
  int('seconds');
  if (history.attrs.since) {
    const since = new Date(history.attrs.since);
    if (!Number.isNaN(since.getTime())) request.since = since;
  }
  return request;
}
