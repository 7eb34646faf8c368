import { describe, expect, it } from 'vitest';
import type { Target } from '../../shared/core/config.ts';
import { archiveCommandOf } from '../../shared/host/pgbackrest-conf.ts';
import { type CheckLine, type CheckResult, judgeHost } from '../../shared/watch/check.ts';
import { PRIMARY_WITH_PGBACKREST, testConfig } from '../support/config.ts';

/** The check's judgement of the archiving settings, from the facts host/check.sh reports. */
const config = testConfig({ BACKUP_TARGETS: JSON.stringify([PRIMARY_WITH_PGBACKREST]) });
const target = config.BACKUP_TARGETS[0] as Target;
const GOOD: CheckResult['settings'] = [
  { name: 'archive_command', setting: archiveCommandOf(target), pendingRestart: false, pendingSetting: null },
  { name: 'archive_library', setting: '', pendingRestart: false, pendingSetting: null },
  { name: 'archive_mode', setting: 'on', pendingRestart: false, pendingSetting: null },
  { name: 'archive_timeout', setting: '60', pendingRestart: false, pendingSetting: null },
  { name: 'wal_level', setting: 'replica', pendingRestart: false, pendingSetting: null },
];

function settingLines(
  changes: Record<string, Partial<CheckResult['settings'][number]>>,
): Record<string, CheckLine | undefined> {
  const settings = GOOD.map((s) => ({ ...s, ...changes[s.name] }));
  const facts: CheckResult = {
    tools: { missing: [] },
    databases: [],
    role: null,
    settings,
    pgbackrest: null,
    s3: { put: 'ok', delete: 'ok', key: 'k' },
    unlogged: [],
    unloggedCount: 0,
  };
  return Object.fromEntries(
    judgeHost(config, target, facts)
      .filter((l) => l.check === 'archive-settings')
      .map((l) => [l.text.split(' ')[0], l]),
  );
}

describe('the check of the archiving settings', () => {
  it('passes every setting as needed', () => {
    expect(Object.values(settingLines({})).every((l) => l?.ok)).toBe(true);
  });

  it('advises a restart only when the value waiting for it is the one needed', () => {
    const lines = settingLines({
      archive_mode: { setting: 'off', pendingRestart: true, pendingSetting: 'on' },
    });
    expect(lines.archive_mode).toMatchObject({
      ok: false,
      text: "archive_mode is 'off' and waits for a PostgreSQL restart to become 'on': restart PostgreSQL",
    });
  });

  it('never advises a restart that would turn archiving off (ALTER SYSTEM SET archive_mode = off, then a reload)', () => {
    const lines = settingLines({
      archive_mode: { setting: 'on', pendingRestart: true, pendingSetting: 'off' },
    });
    expect(lines.archive_mode?.ok).toBe(false);
    expect(lines.archive_mode?.text).toBe(
      "archive_mode is 'on' and a PostgreSQL restart would make it 'off', not 'on': do not restart for it; start the prepare-host workflow for primary (it sets it), or as a superuser ALTER SYSTEM SET archive_mode = 'on' and SELECT pg_reload_conf(), then restart PostgreSQL",
    );
    expect(lines.archive_mode?.text).not.toContain(': restart PostgreSQL');
    const wal = settingLines({ wal_level: { pendingRestart: true, pendingSetting: 'minimal' } });
    expect(wal.wal_level?.text).toContain(
      "a PostgreSQL restart would make it 'minimal', not 'replica': do not restart",
    );
  });

  it('says how to read the waiting value when the role cannot, and restarts only if it is the one needed', () => {
    const lines = settingLines({ archive_mode: { pendingRestart: true, pendingSetting: null } });
    expect(lines.archive_mode?.text).toBe(
      "archive_mode waits for a PostgreSQL restart, to a value the host's role cannot read (pg_file_settings is for superusers): as a superuser, SELECT setting FROM pg_file_settings WHERE name = 'archive_mode'; restart PostgreSQL only if the last is 'on', otherwise start the prepare-host workflow for primary first (or ALTER SYSTEM SET archive_mode = 'on' and SELECT pg_reload_conf())",
    );
  });

  it("names archive_mode, not archive_command, when archiving is off (archive_command reads '(disabled)')", () => {
    const lines = settingLines({
      archive_mode: { setting: 'off' },
      archive_command: { setting: '(disabled)' },
    });
    expect(lines.archive_mode?.text).toBe(
      "archive_mode is 'off', not 'on': start the prepare-host workflow for primary (it sets it; then restart PostgreSQL if it says so)",
    );
    expect(lines.archive_command?.text).toBe(
      "archive_command is not in effect while archive_mode is 'off': fix archive_mode (its line says how), then run check again",
    );
  });
});
