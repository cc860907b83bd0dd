import type { Element } from 'ltx';
import type { JID } from '../../server/jid';
import type { Logger } from '../../server/log';
import type { Router } from '../../server/router';
import { KeyedQueue } from '../../server/keyed-queue';

/**
 * What rooms send, kept in order per recipient. router.route may wait (a block-list read, a
 * peer's answer) before a stanza leaves this node; without a per-recipient queue two stanzas
 * to one user could overtake each other (XEP-0045 §7.2 orders presence, then history, then subject).
 */
export class Outbox {
  private readonly queue = new KeyedQueue();

  constructor(
    private readonly router: Router,
    private readonly logger: Logger,
  ) {}

  send(stanza: Element, from: JID, to: JID): void {
    void this.queue.run(to.toString(), () =>
      this.router.route(stanza, from, to).catch((err) => this.logger.error('room stanza not sent', { to: to.toString(), err: String(err) })),
    );
  }

  /** Resolves once everything sent so far has been handed on. */
  idle(): Promise<void> {
    return this.queue.idle();
  }
}
