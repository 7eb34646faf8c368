import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The README's examples as an operator reads them: the commands of its bash
 * blocks and of its inline code, and the execution inputs it gives. One
 * reading, for the unit tests that check them against the CLI's usage and the
 * schemas and for test/readme-examples.test.ts, which runs them.
 */

export const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

/**
 * The commands of the README's bash blocks, one a line, their comments cut
 * off, a line ending in `\` joined to the next, comment-only lines left out.
 */
export function bashBlocks(): string[][] {
  return [...README.matchAll(/```bash\n([\s\S]*?)```/g)].map(([, body = '']) =>
    body
      .replace(/\\\n\s*/g, '')
      .split('\n')
      .filter((line) => !line.trimStart().startsWith('#'))
      .map((line) =>
        line
          .replace(/\s+#\s.*$/, '')
          .replace(/\s+/g, ' ')
          .trim(),
      )
      .filter((line) => line !== ''),
  );
}

/** What an inline command starts with: this project's CLIs, the AWS CLI, and the tools a restore's undo names. */
const INLINE_COMMAND = /^(npm run|npx |aws |bash |psql |zstd )/;

/** The commands in the README's inline code (`npm run local -- info`), whitespace as one space. */
export function inlineCommands(): string[] {
  const prose = README.replace(/```[\s\S]*?```/g, '');
  return [...prose.matchAll(/`([^`]+)`/g)]
    .map(([, code = '']) => code.replace(/\s+/g, ' ').trim())
    .filter((code) => INLINE_COMMAND.test(code));
}

/**
 * Every input the README gives, with its workflow: those of a `start <workflow>
 * … --input '<json>'` command, those of `local -- check --input '<json>'`, and
 * those of the tables under a heading naming the workflow (`### Database
 * restore (\`database-restore\`)`).
 */
export function readmeInputs(): { workflow: string; json: string }[] {
  const inputs = [...README.matchAll(/start\s+([a-z-]+)\s[^\n`]*?--input '(\{[^']*\})'/g)].map(
    ([, workflow = '', json = '']) => ({ workflow, json }),
  );
  // `npm run local -- check --input '…'` starts the check workflow with it.
  for (const [, json = ''] of README.matchAll(/local -- check\s[^\n`]*?--input '(\{[^']*\})'/g))
    inputs.push({ workflow: 'check', json });
  let workflow = '';
  for (const line of README.split('\n')) {
    if (/^#{2,3} /.test(line)) workflow = /\(`([a-z-]+)`\)\s*$/.exec(line)?.[1] ?? '';
    if (!workflow || !line.startsWith('|')) continue;
    for (const [, json = ''] of line.matchAll(/`(\{"[^`]*\})`/g)) inputs.push({ workflow, json });
  }
  return inputs;
}
