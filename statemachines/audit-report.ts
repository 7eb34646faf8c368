import { at, type Definition, failureEnd, notify, plan, RECEIVE_REQUEST, REPORT } from './steps.ts';

/** The states whose requests the stage's errors name. */
export const AUDIT_REPORT_STATE = { write: 'WriteAuditReport' } as const;

export function auditReport(): Definition {
  return {
    Comment:
      'Monthly audit report (the 1st, for the month before; or started by hand with {"month": "2026-11"}): every scheduled slot of every kind and target from the exported execution histories and the catalog, whether it ran, was verified and restore-tested, the gaps, the measured RPO and recovery times, every failure and what followed it, every operator restore, and the month\'s estimated cost against the budget; written as JSON, Markdown and HTML under audit/reports/ and summarized in an alert.',
    StartAt: RECEIVE_REQUEST,
    TimeoutSeconds: 3600,
    States: {
      ...plan(AUDIT_REPORT_STATE.write, 'writeAuditReport', {
        receiveComment:
          'Wraps the input ({} from the schedule, {"month": "YYYY-MM"} by hand), so that a malformed one still reaches WriteAuditReport\'s error and the alert.',
        comment:
          "Reads the month's exported histories, the manifests and the pgBackRest records, and writes the report (JSON, Markdown, HTML).",
        resultPath: at(REPORT),
        next: 'NotifyAuditReport',
      }),
      ...notify('NotifyAuditReport', {
        workflow: 'audit-report',
        comment: "Posts the report's summary (its gaps, failures and cost) and where it is.",
        message: { 'summary.$': at(REPORT, 'summary') },
        next: 'AuditReportWritten',
      }),
      AuditReportWritten: {
        Type: 'Succeed',
        Comment: 'The output names the month, the gaps and the report keys.',
        OutputPath: at(REPORT),
      },
      ...failureEnd({
        workflow: 'audit-report',
        comment: 'Posts the failed report: its error, and that no report was written for the month.',
        failed: {
          name: 'AuditReportFailed',
          comment: 'Ends the execution as failed with the original error and cause.',
        },
        alertNotSent: {
          error: 'AuditReportFailedAndAlertNotSent',
          cause:
            'The audit report failed and the alert stage itself failed; the execution history shows both.',
        },
      }),
    },
  };
}
