import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { workflowInputSchemas } from '../../shared/audit/report.ts';

/**
 * An operator pastes the README's inputs into the console (or after
 * `npm run local -- start <workflow> --input`) as they are: each must be one its
 * workflow accepts, or the operator's first restore starts with a refusal.
 */

const SCHEMAS = workflowInputSchemas();
type Workflow = keyof typeof SCHEMAS;

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

/**
 * Every input the README gives, with its workflow: those of a `start <workflow>
 * … --input '<json>'` command, and those of the tables under a heading naming the
 * workflow (`### Database restore (\`database-restore\`)`).
 */
function readmeInputs(): { workflow: string; json: string }[] {
  const inputs = [...README.matchAll(/start\s+([a-z-]+)\s[^\n`]*?--input '(\{[^']*\})'/g)].map(
    ([, workflow = '', json = '']) => ({ workflow, json }),
  );
  // `npm run local -- check --input '…'` starts the check workflow with it.
  for (const [, json = ''] of README.matchAll(/local -- check\s[^\n`]*?--input '(\{[^']*\})'/g))
    inputs.push({ workflow: 'check', json });
  let workflow = '';
  for (const line of README.split('\n')) {
    if (/^#{2,3} /.test(line)) workflow = /\(`([a-z-]+)`\)\s*$/.exec(line)?.[1] ?? '';
    if (!workflow || !line.startsWith('|')) continue;
    for (const [, json = ''] of line.matchAll(/`(\{"[^`]*\})`/g)) inputs.push({ workflow, json });
  }
  return inputs;
}

describe("the README's execution inputs", () => {
  const inputs = readmeInputs();

  it('are found for every restore workflow, as the operator’s page gives them', () => {
    const count = (workflow: string) => inputs.filter((i) => i.workflow === workflow).length;
    expect(count('database-restore')).toBeGreaterThanOrEqual(3);
    expect(count('point-in-time-recovery')).toBeGreaterThanOrEqual(4);
    expect(count('files-restore')).toBeGreaterThanOrEqual(3);
    // Each restore workflow shows its input for the vault.
    for (const workflow of ['database-restore', 'point-in-time-recovery', 'files-restore'])
      expect(
        inputs.some((i) => i.workflow === workflow && JSON.parse(i.json).source === 'vault'),
        workflow,
      ).toBe(true);
  });

  it.each(inputs.map((i) => [i.workflow, i.json] as const))('%s %s is accepted', (workflow, json) => {
    expect(Object.keys(SCHEMAS)).toContain(workflow);
    const parsed = SCHEMAS[workflow as Workflow].safeParse(JSON.parse(json));
    expect(parsed.error?.issues ?? []).toEqual([]);
  });
});
