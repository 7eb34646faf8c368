import { describe, expect, it } from 'vitest';
import { workflowInputSchemas } from '../../shared/audit/report.ts';
import { readmeInputs } from '../support/readme.ts';

/**
 * An operator pastes the README's inputs into the console (or after
 * `npm run local -- start <workflow> --input`) as they are: each must be one its
 * workflow accepts, or the operator's first restore starts with a refusal.
 */

const SCHEMAS = workflowInputSchemas();
type Workflow = keyof typeof SCHEMAS;

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
