import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import {
  auditReportInputSchema,
  gatherAuditInputs,
  reportMonth,
  reportSummary,
  writeAuditReport,
} from '../../shared/audit/gather.ts';
import { Catalog } from '../../shared/catalog/catalog.ts';
import { createS3Client } from '../../shared/core/clients.ts';
import { getConfig } from '../../shared/core/config.ts';
import { parseInput, planRequestSchema } from '../../shared/core/input.ts';
import { logger } from '../../shared/core/logger.ts';
import { AUDIT_REPORT_STATE } from '../../statemachines/audit-report.ts';

const config = getConfig();
const s3 = createS3Client(config);
const catalog = new Catalog(s3, config.BACKUP_BUCKET);

/** The month's audit report from the audit trail and the catalog, written under audit/reports/. */
export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async (event: unknown) => {
    const request = parseInput(planRequestSchema, event, `The ${AUDIT_REPORT_STATE.write} request`);
    const input = parseInput(auditReportInputSchema, request.input ?? {}, 'The execution input');
    const month = reportMonth(input.month, new Date(request.startedAt));
    const inputs = await gatherAuditInputs(catalog, s3, {
      month,
      now: new Date(),
      targets: config.BACKUP_TARGETS,
      budgetUsd: input.budgetUsd ?? config.MONTHLY_BUDGET_USD ?? null,
    });
    const written = await writeAuditReport(catalog, s3, inputs);
    const summary = reportSummary(written, config.BACKUP_BUCKET);
    logger.info('audit report written', { month, keys: written.keys, gaps: written.report.summary.gaps });
    return { month, keys: written.keys, gaps: written.report.summary.gaps, summary };
  });
