import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { commitIdOf, parseManifest, renderManifest } from '../store/manifest.ts';
import type { Manifest } from '../store/types.ts';

const d = (c: string) => c.repeat(64);

describe('boot manifest and commit ids', () => {
  const m: Manifest = {
    parent: null,
    kernel: { digest: d('a'), size: 10 },
    initrd: { digest: d('b'), size: 20 },
    layers: [
      { digest: d('c'), size: 30 },
      { digest: d('e'), size: 40 },
    ],
  };

  it('renders the docs/design.md text, base layer first', () => {
    expect(renderManifest(m)).toBe(
      `strata-manifest 1\ncommit-parent -\nkernel sha256:${d('a')} 10\ninitrd sha256:${d('b')} 20\nlayer sha256:${d('c')} 30\nlayer sha256:${d('e')} 40\n`,
    );
  });

  it('a commit id is the sha256 of the manifest text, stable across runs', () => {
    const text = renderManifest(m);
    expect(commitIdOf(text)).toBe(createHash('sha256').update(text).digest('hex'));
    // A fixed value: if this changes, every deployed commit id changes with it.
    expect(commitIdOf(text)).toBe('dbbd009b364188617ef3c894149e9b5dc0296a41917775591010782fbafa8536');
  });

  it('parses what it renders and refuses anything not canonical', () => {
    expect(parseManifest(renderManifest(m))).toEqual(m);
    expect(() => parseManifest(renderManifest(m).replace('layer sha256', 'layer  sha256'))).toThrow(/manifest/);
    expect(() => parseManifest('hello\n')).toThrow(/not a strata manifest/);
    expect(() => parseManifest(`strata-manifest 1\ncommit-parent -\nlayer sha256:${d('c')} -5\n`)).toThrow(/bad manifest line/);
  });

  it('a different parent or layer order gives a different id', () => {
    const a = commitIdOf(renderManifest(m));
    const b = commitIdOf(renderManifest({ ...m, layers: [...m.layers].reverse() }));
    const c = commitIdOf(renderManifest({ ...m, parent: d('f') }));
    expect(new Set([a, b, c]).size).toBe(3);
  });
});
