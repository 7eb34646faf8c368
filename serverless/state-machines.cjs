'use strict';

// Every workflow's definition, rendered by the builder in statemachines/ (Node 24
// requires the TypeScript ES modules directly), under the key serverless.yml
// names the state machine by: `database-backup` is databaseBackup.
const { WORKFLOWS } = require('../statemachines/workflows.ts');

const camelCase = (name) => name.replace(/-([a-z])/g, (_, letter) => letter.toUpperCase());

module.exports = Object.fromEntries(
  Object.entries(WORKFLOWS).map(([name, definition]) => [camelCase(name), definition()]),
);
