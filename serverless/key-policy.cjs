'use strict';

// What the account administers of a key through IAM (the backup key's policy in
// serverless.yml, the vault key's in serverless/vault.cjs): everything but its
// use. PutKeyPolicy stays: KMS refuses a key policy that would stop the
// principal setting it from setting it again (the key policy lockout safety
// check), and each deploy sets it. No DisableKeyRotation, CreateGrant or direct
// cryptography. DisableKey and ScheduleKeyDeletion are here, and each key's
// policy denies them to all but its break-glass role.
const KEY_ADMINISTRATION_ACTIONS = [
  'kms:CancelKeyDeletion',
  'kms:CreateAlias',
  'kms:DeleteAlias',
  'kms:DescribeKey',
  'kms:DisableKey',
  'kms:EnableKey',
  'kms:EnableKeyRotation',
  'kms:GetKeyPolicy',
  'kms:GetKeyRotationStatus',
  'kms:ListAliases',
  'kms:ListGrants',
  'kms:ListKeyPolicies',
  'kms:ListKeyRotations',
  'kms:ListResourceTags',
  'kms:PutKeyPolicy',
  'kms:RevokeGrant',
  'kms:RotateKeyOnDemand',
  'kms:ScheduleKeyDeletion',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:UpdateAlias',
  'kms:UpdateKeyDescription',
];

module.exports = { KEY_ADMINISTRATION_ACTIONS, administrationActions: () => KEY_ADMINISTRATION_ACTIONS };
