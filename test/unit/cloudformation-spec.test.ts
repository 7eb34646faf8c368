import { describe, expect, it } from 'vitest';
import { specFindings } from '../support/cloudformation-spec.ts';

/**
 * The spec check that template.test.ts runs over the packaged template: it
 * passes a template AWS would accept and names what AWS would refuse.
 */

/** A small valid template: nested property types, a required property, and intrinsics where values go. */
const valid = () => ({
  AWSTemplateFormatVersion: '2010-09-09',
  Resources: {
    Bucket: {
      Type: 'AWS::S3::Bucket',
      Properties: {
        BucketName: { 'Fn::Sub': `kennel-backup-\${AWS::AccountId}-\${AWS::Region}-test` },
        VersioningConfiguration: { Status: 'Enabled' },
        LifecycleConfiguration: {
          Rules: [
            {
              Id: 'Backups',
              Status: 'Enabled',
              Prefix: 'database/',
              NoncurrentVersionExpiration: { NoncurrentDays: 30 },
            },
          ],
        },
      },
    },
    Topic: { Type: 'AWS::SNS::Topic', Properties: { TopicName: 'kennel-backup-test-alerts' } },
    Subscription: {
      Type: 'AWS::SNS::Subscription',
      Properties: { TopicArn: { Ref: 'Topic' }, Protocol: 'email', Endpoint: 'ops@kennel.example' },
    },
    Key: {
      Type: 'AWS::KMS::Key',
      Properties: {
        EnableKeyRotation: true,
        KeyPolicy: {
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: { AWS: { 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:root` } },
              Action: ['kms:DescribeKey'],
              Resource: '*',
            },
          ],
        },
      },
    },
  },
  Outputs: { BucketArn: { Value: { 'Fn::GetAtt': ['Bucket', 'Arn'] } } },
});

type Template = ReturnType<typeof valid>;
/** The valid template with one resource's properties changed by `change`. */
function changed(id: keyof Template['Resources'], change: (properties: Record<string, unknown>) => void) {
  const template = valid();
  change(template.Resources[id].Properties as Record<string, unknown>);
  return template;
}

/** The valid template with its lifecycle rule's filter and expiry replaced by `rule`. */
const withRule = (rule: Record<string, unknown>) =>
  changed('Bucket', (p) => {
    p.LifecycleConfiguration = { Rules: [{ Id: 'Backups', Status: 'Enabled', ...rule }] };
  });

describe('the CloudFormation spec check', () => {
  it('finds nothing in a template AWS accepts', () => {
    expect(specFindings(valid())).toEqual([]);
  });

  it('refuses a misspelt property, at the top and in a nested property type', () => {
    const top = changed('Bucket', (p) => {
      p.VersioningConfig = p.VersioningConfiguration;
      delete p.VersioningConfiguration;
    });
    expect(specFindings(top)).toEqual([
      expect.stringMatching(/^Bucket Properties\.VersioningConfig: .*'VersioningConfig' was unexpected/),
    ]);
    const nested = withRule({ Prefx: 'database/', NoncurrentVersionExpiration: { NoncurrentDays: 30 } });
    expect(specFindings(nested)).toEqual([expect.stringContaining("'Prefx' was unexpected")]);
  });

  it('refuses a value of the wrong shape: a list for an object, a string for an integer, a string for a boolean', () => {
    expect(
      specFindings(
        changed('Bucket', (p) => {
          p.VersioningConfiguration = ['Enabled'];
        }),
      ),
    ).toEqual([
      expect.stringMatching(/^Bucket Properties\.VersioningConfiguration: .*is not of type 'object'/),
    ]);
    expect(
      specFindings(
        withRule({ Prefix: 'database/', NoncurrentVersionExpiration: { NoncurrentDays: 'thirty' } }),
      ),
    ).toEqual([expect.stringContaining("'thirty' is not of type 'integer'")]);
    expect(
      specFindings(
        changed('Key', (p) => {
          p.EnableKeyRotation = 'yes';
        }),
      ),
    ).toEqual([expect.stringMatching(/^Key Properties\.EnableKeyRotation: W9003 /)]);
  });

  it('refuses an unknown resource type, a missing required property and a reference to nothing', () => {
    const unknown = valid() as { Resources: Record<string, unknown> };
    unknown.Resources.Queue = { Type: 'AWS::SQS::Queu', Properties: {} };
    expect(specFindings(unknown)).toEqual(["Queue: F3006 Unknown resource type 'AWS::SQS::Queu'"]);
    expect(
      specFindings(
        changed('Subscription', (p) => {
          delete p.Protocol;
        }),
      ),
    ).toEqual(["Subscription Properties: F3003 'Protocol' is a required property"]);
    expect(
      specFindings(
        changed('Subscription', (p) => {
          p.TopicArn = { Ref: 'AlertTopic' };
        }),
      ),
    ).toEqual([
      expect.stringMatching(/^Subscription Properties\.TopicArn: F1020 'AlertTopic' is not one of /),
    ]);
  });
});
