'use strict';

// The bucket's LifecycleConfiguration, built from the one retention table in
// shared/catalog/retention.ts. Node 24 requires ES modules written in TypeScript
// directly (type stripping and require(esm) are both on by default), so the
// rules are derived from the very code the prune stage runs.
const { lifecycleConfiguration } = require('../shared/catalog/retention.ts');

module.exports = lifecycleConfiguration();
