/**
 * Quotas and the free-space reserve while pushes upload (the decision is
 * store/quota.ts's). Uploads in flight are not in the database yet, so the
 * ledger adds what each has written to the store's last facts; the facts
 * (database sums, free space) are re-read at most once a second as uploads
 * grow. Concurrent pushes therefore share one budget: ten parallel uploads
 * cannot each take the whole remaining room.
 */
import type { Store } from '../store/store.ts';
import type { StrataError } from '../store/errors.ts';
import { pushRefusal, type PushSpaceFacts } from '../store/quota.ts';

const REFRESH_MS = 1000;

export interface Upload {
  /** Counts `n` more bytes of this upload; the refusal when they may not be stored. */
  grow(n: number): StrataError | null;
  /** The upload ended (stored or not): its bytes leave the ledger. */
  close(): void;
}

export class UploadLedger {
  private inFlight = 0;
  /** Every byte any upload ever wrote: free space shrinks by what was written since it was measured. */
  private written = 0;
  private readonly perKey = new Map<string, number>();

  constructor(private readonly store: Store) {}

  /** Starts an upload for `key`; throws the refusal when there is no room even for its first byte. */
  async open(key: string): Promise<Upload> {
    let facts: PushSpaceFacts = await this.store.pushSpaceFacts(key);
    let writtenAtFacts = this.written;
    let factsAt = Date.now();
    let refreshing = false;
    let bytes = 0;
    let open = true;
    const refusal = (): StrataError | null =>
      pushRefusal(facts, this.store.config, key, {
        extra: this.inFlight,
        keyExtra: this.perKey.get(key) ?? 0,
        written: this.written - writtenAtFacts,
      });
    const first = refusal();
    if (first) throw first;
    return {
      grow: (n) => {
        if (!open) return null;
        bytes += n;
        this.inFlight += n;
        this.written += n;
        this.perKey.set(key, (this.perKey.get(key) ?? 0) + n);
        if (!refreshing && Date.now() - factsAt > REFRESH_MS) {
          refreshing = true;
          const mark = this.written;
          this.store.pushSpaceFacts(key).then(
            (f) => {
              facts = f;
              writtenAtFacts = mark;
              factsAt = Date.now();
              refreshing = false;
            },
            () => {
              refreshing = false;
            },
          );
        }
        return refusal();
      },
      close: () => {
        if (!open) return;
        open = false;
        this.inFlight -= bytes;
        const left = (this.perKey.get(key) ?? 0) - bytes;
        if (left > 0) this.perKey.set(key, left);
        else this.perKey.delete(key);
      },
    };
  }
}
