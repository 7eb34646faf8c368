import type { BackupKind } from './keys.ts';
import type { Manifest } from './manifest.ts';

/**
 * The one retention table, from the source document. The prune stage and the
 * bucket's lifecycle rules are both derived from it.
 */
export const RETENTION: Record<BackupKind, { s3Days: number; localDays: number }> = {
  full: { s3Days: 30, localDays: 7 },
};

const DAY_MS = 86_400_000;

/** The newest backup whose archive passed verification: never pruned, however old. */
export function newestVerified(manifests: readonly Manifest[]): Manifest | undefined {
  return manifests
    .filter((m) => m.verification.state === 'verified')
    .reduce<Manifest | undefined>((best, m) => (!best || m.window.until > best.window.until ? m : best), undefined);
}

/**
 * The backups older than `days` at `now`, by the time their data was taken,
 * except the newest verified one.
 */
export function expired(manifests: readonly Manifest[], now: Date, days: number): Manifest[] {
  const keep = newestVerified(manifests);
  const cutoff = now.getTime() - days * DAY_MS;
  return manifests.filter((m) => m !== keep && Date.parse(m.window.until) < cutoff);
}
