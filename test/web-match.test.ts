/**
 * The page previews which clients a rule would catch with its own copy of
 * the matcher (web/match.js; the browser cannot import store/). It must
 * agree with the server's (store/assignments.ts), which decides at boot.
 */
import { describe, expect, it } from 'vitest';
import { matchAssignment as serverMatch, parseMatch as serverParse } from '../store/assignments.ts';
import type { Assignment } from '../store/types.ts';
import { matchAssignment, parseMatch, previewChange } from '../web/match.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const rule = (match: string, profile = 'p'): Assignment => ({ ...serverParse(match), profile, pin: null, cmdline: '' });

describe('web/match.js agrees with store/assignments.ts', () => {
  it('reads the same rule texts the same way (and refuses the same ones)', () => {
    const texts = [
      'default',
      ' default ',
      'AA:BB:CC:DD:EE:FF',
      'aa-bb-cc-dd-ee-ff',
      'aabb.ccdd.eeff',
      'aabbccddeeff',
      '10.0.0.7',
      '10.0.0.07',
      '256.1.1.1',
      '10.1.2.3/24',
      '10.1.2.3/33',
      '0.0.0.0/0',
      '192.168.1.200/30',
      '10.0.0.0/8',
      'fe80::1',
      'lab',
      '',
      '1.2.3',
      '1.2.3.4/',
      'aa:bb:cc:dd:ee',
      '12.34.56.78.90.12',
    ];
    for (const t of texts) {
      let want: { match: string; kind: string } | null;
      try {
        want = serverParse(t);
      } catch {
        want = null;
      }
      expect(parseMatch(t), JSON.stringify(t)).toEqual(want);
    }
  });

  it('picks the same rule for random clients and rule sets (MAC, IP, smallest CIDR, default)', () => {
    const r = rng(42);
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
    const ip = () => `10.${pick([0, 1, 2])}.${pick([0, 1, 2, 3])}.${pick([1, 2, 3, 200])}`;
    const mac = () => `52:54:00:00:00:0${pick([1, 2, 3, 4])}`;
    for (let round = 0; round < 300; round++) {
      const texts = new Set<string>();
      const n = 1 + Math.floor(r() * 6);
      for (let i = 0; i < n; i++) {
        texts.add(pick([() => mac(), () => ip(), () => `${ip()}/${pick([8, 16, 24, 30, 32])}`, () => 'default'])());
      }
      const rules = [...texts].map((t, i) => rule(t, `p${i}`));
      const uniq = rules.filter((a, i) => rules.findIndex((b) => b.match === a.match) === i);
      for (let c = 0; c < 10; c++) {
        const m = r() < 0.2 ? null : mac();
        const a = r() < 0.2 ? null : r() < 0.1 ? `::ffff:${ip()}` : ip();
        expect(matchAssignment(uniq, m, a)?.match ?? null, `${m} ${a} in ${uniq.map((x) => x.match).join(',')}`).toBe(
          serverMatch(uniq, m, a)?.match ?? null,
        );
      }
    }
  });

  it('previews what a new or removed rule changes for known clients', () => {
    const rules = [rule('10.0.0.0/8', 'wide'), rule('default', 'fallback')];
    const clients = [
      { mac: '52:54:00:00:00:01', ip: '10.9.3.4' },
      { mac: '52:54:00:00:00:02', ip: '10.1.0.1' },
      { mac: '52:54:00:00:00:03', ip: '192.168.1.5' },
    ];
    const add = rule('10.9.0.0/16', 'lab');
    const rows = previewChange(rules, clients, { add });
    expect(rows.map((x) => [x.client.mac, x.before?.match, x.after?.match, x.caught])).toEqual([
      ['52:54:00:00:00:01', '10.0.0.0/8', '10.9.0.0/16', true],
    ]);
    const gone = previewChange(rules, clients, { remove: '10.0.0.0/8' });
    expect(gone.map((x) => [x.client.mac, x.after?.match, x.caught])).toEqual([
      ['52:54:00:00:00:01', 'default', false],
      ['52:54:00:00:00:02', 'default', false],
    ]);
  });
});
