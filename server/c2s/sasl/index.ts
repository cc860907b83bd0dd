import type { SaslMechanism } from './mechanism';
import { PlainMechanism } from './plain';
import { ScramMechanism, type ScramOptions } from './scram';

export * from './mechanism';
export { PlainMechanism } from './plain';
export {
  DEFAULT_SCRAM_ITERATIONS, ScramMechanism, deriveScramCredential, deriveScramCredentials,
  deriveScramCredentialsAsync, verifyPassword, verifyPasswordAsync,
  type ScramOptions, type UnknownUserOptions,
} from './scram';
export { availableChannelBindings, channelBindingFor } from './channel-binding';

/** The mechanisms, strongest first (the order they are offered in). */
export function createMechanisms(options: ScramOptions = {}): SaslMechanism[] {
  return [
    new ScramMechanism('SHA-256', true, options),
    new ScramMechanism('SHA-1', true, options),
    new ScramMechanism('SHA-256', false, options),
    new ScramMechanism('SHA-1', false, options),
    new PlainMechanism(options),
  ];
}

/** Default mechanisms (unknown-user secret random per process). */
export const MECHANISMS: SaslMechanism[] = createMechanisms();

/** The mechanisms to advertise on a stream, in preference order. */
export function offeredMechanisms(
  secure: boolean, hasChannelBinding: boolean, mechanisms: SaslMechanism[] = MECHANISMS,
): SaslMechanism[] {
  return mechanisms.filter((m) => (secure || !m.needsTls) && (hasChannelBinding || !m.needsChannelBinding));
}
