import { CelEngine, type Engine, type StandardDiagnostic } from '@aws/cloudformation-validate';

/**
 * Checks a CloudFormation template against AWS's published resource schemas,
 * offline, with AWS's own validator (@aws/cloudformation-validate: the CloudFormation
 * registry's resource provider schemas and cfn-lint's rules, compiled in; its
 * report names both versions). What CloudFormation would refuse at deploy time
 * fails here: an unknown resource type, a property its type does not have, a
 * required one missing, a value of the wrong shape (a list for an object, a
 * string for a number, a nested type's property), an intrinsic function where
 * the property takes none, a reference to nothing.
 */

/**
 * Warnings that still mean a value is not what the schema takes, or that the
 * check did not run whole: they fail like errors. The validator's other
 * warnings are advice (a Sub without variables, a DependsOn a GetAtt already
 * implies), not the schema, and pass.
 */
export const REFUSING_WARNINGS: Record<string, string> = {
  W3030: "a value outside its property's allowed values",
  W9003: "a value CloudFormation would have to coerce to its property's type ('yes' for a boolean)",
  W1103: 'an intrinsic function CloudFormation does not know',
  W9052: 'the validator ran out of budget before checking everything',
};

const FAILING_SEVERITIES = new Set(['ERROR', 'FATAL']);

/** Compiles the rules once per process (a third of a second); validating a template takes as long again. */
let engine: Engine | undefined;

/**
 * The findings of `template` (an object, as `serverless package` writes it) that
 * CloudFormation would refuse, each as `<logical id> <property path>: <rule> <message>`;
 * empty when AWS would accept every resource as written. The account and region
 * are the pseudo parameters' stand-ins: region-specific checks (is the type
 * offered there) use us-east-1, this project's default.
 */
export function specFindings(template: unknown): string[] {
  engine ??= new CelEngine();
  const bytes = Buffer.from(JSON.stringify(template));
  const report = engine.validateStandard(
    { path: 'cloudformation-template.json', readBytes: () => bytes },
    { pseudoParameterOverrides: { region: 'us-east-1', accountId: '123456789012', partition: 'aws' } },
  );
  return report.diagnostics.filter(refuses).map(describe);
}

const refuses = (d: StandardDiagnostic) =>
  FAILING_SEVERITIES.has(d.severity) || d.ruleId in REFUSING_WARNINGS;

function describe(d: StandardDiagnostic): string {
  const where = [d.entity?.logicalId, d.propertyPath].filter(Boolean).join(' ');
  return `${where || '(template)'}: ${d.ruleId} ${d.message}`;
}
