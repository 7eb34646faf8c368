import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bashBlocks, README } from '../support/readme.ts';

/**
 * The README's commands as a fresh machine's operator pastes them: its first
 * screen's two lines (issue 14: one installs what is missing and runs the full
 * backup, one runs the tests), the same setup and test command as CI's, and
 * every `npm run local -- <command>` naming a command and a workflow the local
 * CLI has (its own usage text, printed by running it without arguments). The
 * inputs those commands pass are checked by readme-inputs.test.ts.
 */

const ROOT = join(import.meta.dirname, '..', '..');

/** The local CLI's usage: its commands and workflows, as it prints them. */
function cliUsage(): { commands: Set<string>; workflows: Set<string> } {
  const run = spawnSync('npx', ['node', 'local/cli.ts'], { cwd: ROOT, encoding: 'utf8' });
  const usage = run.stderr;
  const commands = new Set([...usage.matchAll(/^ {2}([a-z]+)\b/gm)].map(([, c = '']) => c));
  const workflows = new Set((/^Workflows: (.*)$/m.exec(usage)?.[1] ?? '').split(', '));
  return { commands, workflows };
}

describe("the README's commands", () => {
  it('open with two lines: setup and the full backup on the local stack, then the tests', () => {
    const first = README.indexOf('```bash');
    // On the first screen: within the first 40 lines.
    expect(README.slice(0, first).split('\n').length).toBeLessThan(40);
    expect(bashBlocks()[0]).toEqual([
      'bash .ci/setup && npm run -s local -- start database-backup',
      'npm test',
    ]);
  });

  it("are CI's: .ci/run installs with the same setup and runs the same test command", () => {
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).toMatch(/^bash \.ci\/setup$/m);
    expect(ci).toMatch(/^npm test\b/m);
  });

  it('name only commands and workflows the local CLI has', () => {
    const { commands, workflows } = cliUsage();
    expect(commands).toContain('start');
    expect(workflows).toContain('database-backup');
    const named = bashBlocks()
      .flat()
      .flatMap((line) => [...line.matchAll(/npm run (?:-s )?local -- ([a-z]+)(?: ([a-z-]+))?/g)]);
    expect(named.length).toBeGreaterThan(10);
    for (const [line, command = '', workflow = ''] of named) {
      expect(commands, line).toContain(command);
      if (command === 'start') expect(workflows, line).toContain(workflow);
    }
  });
});
