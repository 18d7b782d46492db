/**
 * The boot manifest (docs/design.md): a shell-friendly text whose sha256 is the
 * commit id. Rendering is canonical — one way to write a given manifest — so
 * the same chain and parent always give the same id, on any machine.
 */
import { createHash } from 'node:crypto';
import { StrataError } from './errors.ts';
import type { BlobRef, CommitId, Manifest } from './types.ts';

const HEX64 = /^[0-9a-f]{64}$/;

export function renderManifest(m: Manifest): string {
  const lines = ['strata-manifest 1', `commit-parent ${m.parent ?? '-'}`];
  // kernel/initrd lines are omitted when a profile has none (a profile made
  // from a bare tree); the initramfs then boots whatever kernel iPXE loaded.
  if (m.kernel) lines.push(`kernel sha256:${m.kernel.digest} ${m.kernel.size}`);
  if (m.initrd) lines.push(`initrd sha256:${m.initrd.digest} ${m.initrd.size}`);
  for (const l of m.layers) lines.push(`layer sha256:${l.digest} ${l.size}`);
  return `${lines.join('\n')}\n`;
}

export function commitIdOf(text: string): CommitId {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function blob(parts: string[], line: string): BlobRef {
  const m = /^sha256:([0-9a-f]{64})$/.exec(parts[1] ?? '');
  const size = Number(parts[2]);
  if (!m || parts.length !== 3 || !Number.isSafeInteger(size) || size < 0) {
    throw new StrataError('E_BAD_MANIFEST', `bad manifest line: ${line}`);
  }
  return { digest: m[1]!, size };
}

/**
 * Parses a manifest. `trusted` skips the canonical-form check for text this
 * store wrote itself (log of 10,000 commits re-renders nothing); anything
 * that came from outside must be parsed untrusted.
 */
export function parseManifest(text: string, opts: { trusted?: boolean } = {}): Manifest {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines[0] !== 'strata-manifest 1')
    throw new StrataError('E_BAD_MANIFEST', 'not a strata manifest (first line must be "strata-manifest 1")');
  const m: Manifest = { parent: null, kernel: null, initrd: null, layers: [] };
  for (const line of lines.slice(1)) {
    const parts = line.split(' ');
    switch (parts[0]) {
      case 'commit-parent':
        if (parts[1] !== '-' && !HEX64.test(parts[1] ?? '')) throw new StrataError('E_BAD_MANIFEST', `bad manifest line: ${line}`);
        m.parent = parts[1] === '-' ? null : parts[1]!;
        break;
      case 'kernel':
        m.kernel = blob(parts, line);
        break;
      case 'initrd':
        m.initrd = blob(parts, line);
        break;
      case 'layer':
        m.layers.push(blob(parts, line));
        break;
      default:
        throw new StrataError('E_BAD_MANIFEST', `unknown manifest line: ${line}`);
    }
  }
  if (!opts.trusted && renderManifest(m) !== text) throw new StrataError('E_BAD_MANIFEST', 'manifest is not in canonical form');
  return m;
}
