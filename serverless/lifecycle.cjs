'use strict';

// The bucket's LifecycleConfiguration and ObjectLockConfiguration, built from the
// one retention table in shared/catalog/retention.ts. Node 24 requires ES modules
// written in TypeScript directly (type stripping and require(esm) are both on by
// default), so the rules are derived from the very code the prune stage and
// VerifyArchive run.
const {
  lifecycleConfiguration,
  OBJECT_LOCK_MODES,
  objectLockConfiguration,
} = require('../shared/catalog/retention.ts');

/**
 * The `objectLockMode` param: `governance` (the default: a principal granted
 * s3:BypassGovernanceRetention can still undo a mistaken deploy's locks) or
 * `compliance` (no one can, until each version's date). Anything else fails
 * packaging: a lock mode cannot be taken back once versions carry it.
 */
async function checkedObjectLockMode(resolveVariable) {
  const given = String((await resolveVariable('param:objectLockMode')) ?? '').trim();
  const mode = given.toUpperCase();
  if (!OBJECT_LOCK_MODES.includes(mode)) {
    throw new Error(
      `The objectLockMode param "${given}" is not an Object Lock mode. Give governance (the default: a role granted s3:BypassGovernanceRetention can still remove a lock) or compliance (no one can remove one before its date, the account's root user included), e.g. --param 'objectLockMode=compliance'.`,
    );
  }
  return mode;
}

module.exports = {
  lifecycleConfiguration: () => lifecycleConfiguration(),
  objectLockConfiguration: async ({ resolveVariable }) =>
    objectLockConfiguration(await checkedObjectLockMode(resolveVariable)),
};
