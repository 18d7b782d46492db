/** SQL for who may do what: SSH keys and admin API tokens (only their hashes). */
import type { DB } from '../db.ts';
import type { SshKey } from '../types.ts';

export interface KeyRow extends SshKey {
  algo: string;
  keyData: Buffer;
}

function toKey(r: Record<string, unknown>): SshKey {
  return {
    name: r.name as string,
    publicKey: r.public_key as string,
    fingerprint: r.fingerprint as string,
    admin: !!r.admin,
    profiles: JSON.parse(r.profiles as string) as string[],
  };
}

export class KeysTable {
  constructor(private readonly db: DB) {}

  upsert(k: KeyRow): void {
    this.db
      .prepare(`INSERT INTO keys (name, public_key, algo, key_data, fingerprint, admin, profiles) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET public_key = excluded.public_key, algo = excluded.algo, key_data = excluded.key_data, fingerprint = excluded.fingerprint, admin = excluded.admin, profiles = excluded.profiles`)
      .run(k.name, k.publicKey, k.algo, k.keyData, k.fingerprint, k.admin ? 1 : 0, JSON.stringify(k.profiles));
  }

  all(): SshKey[] {
    return (this.db.prepare('SELECT * FROM keys ORDER BY name').all() as Record<string, unknown>[]).map(toKey);
  }

  get(name: string): SshKey | undefined {
    const r = this.db.prepare('SELECT * FROM keys WHERE name = ?').get(name) as Record<string, unknown> | undefined;
    return r ? toKey(r) : undefined;
  }

  find(algo: string, keyData: Buffer): SshKey | undefined {
    const r = this.db.prepare('SELECT * FROM keys WHERE algo = ? AND key_data = ?').get(algo, keyData) as
      | Record<string, unknown>
      | undefined;
    return r ? toKey(r) : undefined;
  }

  remove(name: string): boolean {
    return this.db.prepare('DELETE FROM keys WHERE name = ?').run(name).changes > 0;
  }
}

export class TokensTable {
  constructor(private readonly db: DB) {}

  /** Throws the database's error as it is: the caller tells a taken name from other failures. */
  insert(name: string, hash: string, createdAt: number): void {
    this.db.prepare('INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)').run(name, hash, createdAt);
  }

  nameOf(hash: string): string | undefined {
    return (this.db.prepare('SELECT name FROM tokens WHERE hash = ?').get(hash) as { name: string } | undefined)?.name;
  }

  all(): { name: string; createdAt: number }[] {
    return (this.db.prepare('SELECT name, created_at FROM tokens ORDER BY name').all() as { name: string; created_at: number }[]).map(
      (r) => ({ name: r.name, createdAt: r.created_at }),
    );
  }

  remove(name: string): boolean {
    return this.db.prepare('DELETE FROM tokens WHERE name = ?').run(name).changes > 0;
  }
}
