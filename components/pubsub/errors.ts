import { Element } from 'ltx';
import { StanzaError, type StanzaErrorCondition, type StanzaErrorType } from '../../server/errors';
import { NS } from '../../server/xml/ns';

/** XEP-0060 §14.2: the application-specific conditions of http://jabber.org/protocol/pubsub#errors. */
export type PubSubErrorCondition =
  | 'closed-node' | 'configuration-required' | 'invalid-jid' | 'invalid-options' | 'invalid-payload'
  | 'invalid-subid' | 'item-forbidden' | 'item-required' | 'jid-required' | 'max-items-exceeded'
  | 'max-nodes-exceeded' | 'nodeid-required' | 'not-in-roster-group' | 'not-subscribed'
  | 'payload-too-big' | 'payload-required' | 'pending-subscription' | 'precondition-not-met'
  | 'presence-subscription-required' | 'subid-required' | 'too-many-subscriptions' | 'unsupported';

/**
 * A StanzaError with a pubsub#errors condition, e.g. `<not-authorized/>` with
 * `<presence-subscription-required/>`. `feature` names the unsupported feature (§14.2 unsupported).
 */
export function pubsubError(condition: StanzaErrorCondition, app?: PubSubErrorCondition, text?: string, opts: { feature?: string; type?: StanzaErrorType } = {}): StanzaError {
  const appCondition = app ? new Element(app, opts.feature ? { xmlns: NS.PUBSUB_ERRORS, feature: opts.feature } : { xmlns: NS.PUBSUB_ERRORS }) : undefined;
  return new StanzaError(condition, text, opts.type, appCondition);
}

/** XEP-0060 §6.1.3.x and friends: the common "no such node". */
export function nodeNotFound(node: string): StanzaError {
  return new StanzaError('item-not-found', `no node ${node}`);
}
