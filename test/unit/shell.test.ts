import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { renderScript, shellQuote } from '../../shared/host/shell.ts';

describe('shellQuote', () => {
  it.each([
    'plain',
    "it's",
    '$(touch /tmp/kb-pwned)',
    '`id`',
    'a b\tc\nd',
    '; rm -rf / #',
    '\'"\\$*?[]{}|&<>',
    '',
    'ünïcødé 🐕',
  ])('bash reads %j back unchanged', (value) => {
    const result = spawnSync('bash', ['-c', `printf '%s' ${shellQuote(value)}`], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(value);
  });

  it('refuses a NUL byte, which no shell argument can carry', () => {
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });
});

describe('renderScript', () => {
  it('renders a script that bash parses, with the parameters as quoted assignments', () => {
    const script = renderScript('prune-local', {
      KB_LOCAL_DIR: '/opt/backup/x',
      KB_FILES: "a.sql.zst b'c.sql.zst",
    });
    expect(script.startsWith('#!/bin/bash\n')).toBe(true);
    expect(script).toContain("KB_FILES='a.sql.zst b'\\''c.sql.zst'");
    expect(spawnSync('bash', ['-n'], { input: script }).status).toBe(0);
  });

  it('refuses a parameter name that is not KB_*', () => {
    expect(() => renderScript('prune-local', { 'PATH=/tmp;x': 'y' })).toThrow(/parameter name/);
  });

  it.each(['database-backup', 'files-backup', 'restore-archive', 'prune-local'] as const)(
    '%s parses with bash -n',
    (name) => {
      expect(spawnSync('bash', ['-n'], { input: renderScript(name, {}) }).status).toBe(0);
    },
  );
});
