import { describe, expect, it } from 'vitest';
import { auditReportInputSchema } from '../../shared/audit/gather.ts';
import { backupInputSchema } from '../../shared/backup/database-plan.ts';
import { filesInputSchema } from '../../shared/backup/files-plan.ts';
import { prepareInputSchema } from '../../shared/host/prepare.ts';
import { restoreInputSchema } from '../../shared/restore/database-schemas.ts';
import { filesRestoreInputSchema } from '../../shared/restore/files-plan.ts';
import { pointInTimeInputSchema } from '../../shared/restore/point-in-time.ts';
import { checkInputSchema } from '../../shared/watch/check.ts';
import { drillInputSchema } from '../../shared/watch/drill.ts';
import { recoveryDrillInputSchema } from '../../shared/watch/recovery-drill.ts';
import { readmeInputs } from '../support/readme.ts';

/**
 * An operator pastes the README's inputs into the console (or after
 * `npm run local -- start <workflow> --input`) as they are: each must be one its
 * workflow accepts, or the operator's first restore starts with a refusal.
 */

const SCHEMAS = {
  'database-backup': backupInputSchema,
  'files-backup': filesInputSchema,
  'database-restore': restoreInputSchema,
  'point-in-time-recovery': pointInTimeInputSchema,
  'files-restore': filesRestoreInputSchema,
  'restore-drill': drillInputSchema,
  'recovery-drill': recoveryDrillInputSchema,
  'prepare-host': prepareInputSchema,
  'audit-report': auditReportInputSchema,
  check: checkInputSchema,
} as const;
type Workflow = keyof typeof SCHEMAS;

describe("the README's execution inputs", () => {
  const inputs = readmeInputs();

  it('are found for every restore workflow, as the operator’s page gives them', () => {
    const count = (workflow: string) => inputs.filter((i) => i.workflow === workflow).length;
    expect(count('database-restore')).toBeGreaterThanOrEqual(3);
    expect(count('point-in-time-recovery')).toBeGreaterThanOrEqual(4);
    expect(count('files-restore')).toBeGreaterThanOrEqual(3);
  });

  it.each(inputs.map((i) => [i.workflow, i.json] as const))('%s %s is accepted', (workflow, json) => {
    expect(Object.keys(SCHEMAS)).toContain(workflow);
    const parsed = SCHEMAS[workflow as Workflow].safeParse(JSON.parse(json));
    expect(parsed.error?.issues ?? []).toEqual([]);
  });
});
