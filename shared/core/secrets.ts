import { getParameter } from '@aws-lambda-powertools/parameters/ssm';
import { ConfigError } from './errors.ts';

/** Reads a secret when a stage needs it; locally a stand-in returns the local value. */
export type SecretProvider = () => Promise<string>;

/**
 * A SecureString parameter's value, decrypted and cached for five minutes by
 * Powertools (one SSM call per warm container at most every 300 s); it never
 * leaves the function. An empty parameter throws ConfigError naming it and
 * `what` should be stored there.
 */
export function secureString(parameter: string, what: string): SecretProvider {
  return async () => {
    const value = await getParameter(parameter, { decrypt: true, maxAge: 300 });
    if (!value) throw new ConfigError(`SSM parameter ${parameter} is empty; store ${what} there.`);
    return value;
  };
}
