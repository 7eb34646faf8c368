import type { DatabaseProperties } from '../catalog/manifest.ts';
import * as z from '../core/schema.ts';

/**
 * What a restore does with the roles a dump's objects need (owners, grantees,
 * the roles of its settings: the manifest's `properties.roles`) that the cluster
 * it restores into lacks. `create` (the default, and the restore test's): makes
 * them, NOLOGIN and without a password. `omit` (an operator's choice, e.g. into
 * another cluster whose roles are its own): makes none that stays; their objects
 * go to the new database's owner, as `pg_restore --no-owner` gives them, and
 * their grants, default privileges and settings are left out. Roles the cluster
 * has keep what they own either way. host/restore-archive.sh does it.
 */
export const MISSING_ROLES = ['create', 'omit'] as const;

export type MissingRoles = (typeof MISSING_ROLES)[number];

/** The execution input's `missingRoles`. */
export const missingRolesInput = z._default(
  z.enum(MISSING_ROLES, {
    error:
      'must be "create" (the default: the roles the backup needs that this cluster lacks are created, NOLOGIN and without a password) or "omit" (none is created: their objects go to the new database\'s owner, their grants are left out)',
  }),
  'create',
);

/**
 * The comment (COMMENT ON ROLE) that marks the roles a restore into `database`
 * makes to stand in for omitted ones while its dump is applied, so that its own
 * clean-up and restore-cleanup (after an abort or a timeout) find exactly
 * those: `database` is the run's own staging or scratch database.
 */
export function standInMark(database: string): string {
  return `kennel-backup: stands in for a missing role while ${database} is restored; dropped when it ends`;
}

/** Names in a sentence, the first 20 then how many more. */
function listed(names: readonly string[], shown = 20): string {
  const more = names.length - shown;
  return `${names.slice(0, shown).join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}

/**
 * The dry run's sentence: the roles the backup's objects need, and what the
 * restore will do with those this cluster lacks (which ones, only the host
 * knows: the plan does not reach the database).
 */
export function plannedRoles(properties: DatabaseProperties | null, mode: MissingRoles): string {
  if (!properties) return 'The backup records no roles: the roles its objects name must exist here.';
  const owners = properties.roles.filter((r) => r.owns).map((r) => r.name);
  const others = properties.roles.filter((r) => !r.owns).map((r) => r.name);
  const needed = `The backup's objects belong to ${listed(owners)}${others.length > 0 ? `; it also names ${listed(others)} (grants, settings)` : ''}.`;
  return mode === 'create'
    ? `${needed} Roles among them that this cluster lacks will be created, NOLOGIN and without a password (missingRoles: create).`
    : `${needed} Roles among them that this cluster lacks will not be created (missingRoles: omit): their objects will be owned by the new database's owner (${properties.owner} if this cluster has it, otherwise the role the host connects as), and their grants, default privileges and settings left out.`;
}

/** What host/restore-archive.sh reports of the roles. */
export const restoredRolesSchema = {
  /** Created, NOLOGIN and without a password (missingRoles create). */
  createdRoles: z.array(z.string()),
  /** Missing here and left out (missingRoles omit); none of them exists after the restore. */
  omittedRoles: z.array(z.string()),
  /** Those of omittedRoles that owned objects of the backup, now the new database's owner's. */
  omittedOwners: z.array(z.string()),
};

/** The summary's words for the roles: which were created, or whose objects went to `owner`. */
export function describeRoles(
  r: { [K in keyof typeof restoredRolesSchema]: string[] },
  owner: string,
): string {
  if (r.omittedRoles.length > 0) {
    const objects =
      r.omittedOwners.length > 0 ? `objects of ${listed(r.omittedOwners)} now owned by ${owner}; ` : '';
    return `owners not restored (missingRoles: omit): ${objects}grants to and settings of ${listed(r.omittedRoles)} left out; no role was created`;
  }
  return r.createdRoles.length > 0
    ? `roles created, NOLOGIN and without a password (ALTER ROLE … LOGIN to let one log in): ${r.createdRoles.join(', ')}`
    : 'no role had to be created';
}
