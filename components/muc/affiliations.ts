import { StanzaError } from '../../server/errors';

/** XEP-0045 §5.2: long-lived, tied to a bare JID. */
export type Affiliation = 'owner' | 'admin' | 'member' | 'none' | 'outcast';
/** XEP-0045 §5.1: for the length of a visit. */
export type Role = 'moderator' | 'participant' | 'visitor' | 'none';

export const AFFILIATIONS: readonly Affiliation[] = ['owner', 'admin', 'member', 'none', 'outcast'];
export const ROLES: readonly Role[] = ['moderator', 'participant', 'visitor', 'none'];

const AFFILIATION_RANK: Record<Affiliation, number> = { outcast: 0, none: 1, member: 2, admin: 3, owner: 4 };
const ROLE_RANK: Record<Role, number> = { none: 0, visitor: 1, participant: 2, moderator: 3 };

export const affiliationRank = (a: Affiliation): number => AFFILIATION_RANK[a];
export const roleRank = (r: Role): number => ROLE_RANK[r];

export function isAffiliation(value: string | undefined): value is Affiliation {
  return value !== undefined && (AFFILIATIONS as readonly string[]).includes(value);
}

export function isRole(value: string | undefined): value is Role {
  return value !== undefined && (ROLES as readonly string[]).includes(value);
}

/**
 * XEP-0045 §5.1.2: the role an occupant gets on entering. Owners and admins are moderators; in a
 * moderated room only members and above get voice.
 */
export function defaultRole(affiliation: Affiliation, moderated: boolean): Role {
  if (affiliation === 'owner' || affiliation === 'admin') return 'moderator';
  if (affiliation === 'outcast') return 'none';
  if (moderated && affiliation === 'none') return 'visitor';
  return 'participant';
}

/**
 * May `actor` (a moderator) give `target` the role `role`? XEP-0045 §8.2-§8.5, §9.6-§9.7:
 * moderators kick and grant or revoke voice, but never against an admin or owner; only admins and
 * owners grant or revoke moderator. Throws the error the spec names.
 */
export function checkRoleChange(actor: { role: Role; affiliation: Affiliation }, target: { role: Role; affiliation: Affiliation }, role: Role): void {
  if (actor.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators change roles');
  const actorRank = affiliationRank(actor.affiliation);
  if (role === 'moderator' || target.role === 'moderator') {
    // §9.6/§9.7: granting or revoking moderator is for admins and owners.
    if (actorRank < AFFILIATION_RANK.admin) throw new StanzaError('not-allowed', 'only admins and owners grant or revoke moderator');
  }
  // §8.2/§8.4: a moderator may not kick an admin or owner, nor revoke their voice.
  if (role !== 'moderator' && affiliationRank(target.affiliation) >= AFFILIATION_RANK.admin) {
    throw new StanzaError('not-allowed', 'admins and owners keep their role');
  }
}

/**
 * May `actor` (an affiliation) change `current` to `next`? XEP-0045 §9 (admins: member list and
 * bans, for users below admin) and §10.3-§10.7 (owners: everything).
 */
export function checkAffiliationChange(actor: Affiliation, current: Affiliation, next: Affiliation): void {
  if (actor === 'owner') return;
  if (actor !== 'admin') throw new StanzaError('forbidden', 'only admins and owners change affiliations');
  const admin = AFFILIATION_RANK.admin;
  if (affiliationRank(current) >= admin || affiliationRank(next) >= admin) {
    throw new StanzaError('not-allowed', 'only owners grant or revoke admin and owner');
  }
}
