import { nextStanza, xml, type XmppClient } from './server';

/**
 * RFC 6121 §3.1: `subscriber` asks for `contact`'s presence and `contact` approves. Resolves once
 * the subscriber has been told (by then both rosters are stored).
 */
export async function subscribe(subscriber: XmppClient, contact: XmppClient, ms?: number): Promise<void> {
  const subscriberBare = subscriber.jid!.bare().toString();
  const contactBare = contact.jid!.bare().toString();
  const request = nextStanza(contact, (s) => s.is('presence') && s.attrs.type === 'subscribe' && s.attrs.from === subscriberBare, ms);
  await subscriber.send(xml('presence', { type: 'subscribe', to: contactBare }));
  await request;
  const approved = nextStanza(subscriber, (s) => s.is('presence') && s.attrs.type === 'subscribed' && s.attrs.from === contactBare, ms);
  await contact.send(xml('presence', { type: 'subscribed', to: subscriberBare }));
  await approved;
}
