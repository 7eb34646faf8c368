import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HOST_SCRIPTS, renderScript, shellQuote, UPLOADING_SCRIPTS } from '../../shared/host/shell.ts';

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

  it("renders s3_put's uploader into the scripts that upload, and only those, as Python that compiles", () => {
    for (const name of HOST_SCRIPTS) {
      const script = renderScript(name, {});
      // The scripts that upload (s3_put, or store_archive, which calls it) are the ones listed.
      const own = readFileSync(new URL(`../../host/${name}.sh`, import.meta.url), 'utf8');
      const uploads = own.split('\n').some((line) => /^[^#]*\b(s3_put|store_archive)\b/.test(line));
      expect(uploads, name).toBe(UPLOADING_SCRIPTS.has(name));
      const program = /^S3_PUT_PY=('(?:[^']|'\\'')*')$/m.exec(script)?.[1];
      expect(program !== undefined, name).toBe(UPLOADING_SCRIPTS.has(name));
      if (!program) continue;
      const code = spawnSync('bash', ['-c', `printf '%s' ${program}`], { encoding: 'utf8' }).stdout;
      expect(code).toContain('s3.meta.events.register(f"before-sign.s3.{operation}", create_only)');
      expect(code).not.toMatch(/^\s*#/m);
      const compiled = spawnSync(
        'python3',
        ['-c', 'import sys; compile(sys.stdin.read(), "s3-put.py", "exec")'],
        {
          input: code,
          encoding: 'utf8',
        },
      );
      expect(compiled.status, compiled.stderr).toBe(0);
    }
  });
});
