/**
 * The boot decision as a pure function (store/boot-plan.ts planBoot): what
 * a client booting now gets from the facts the store gathered, or why it
 * must ask again. The HTTP route only renders this plan.
 */
import { describe, expect, it } from 'vitest';
import { planBoot, type BootFacts } from '../store/boot-plan.ts';
import type { Assignment, Profile } from '../store/types.ts';

const C = 'c'.repeat(64);
const blob = (ch: string) => ({ digest: ch.repeat(64), size: 10 });
const profile: Profile = {
  name: 'lab',
  cmdline: 'console=ttyS0  quiet',
  compressor: 'zstd',
  level: null,
  kernel: blob('1'),
  initrd: blob('2'),
  head: C,
  createdAt: 0,
};
const assignment: Assignment = { match: '52:54:00:12:34:56', kind: 'mac', profile: 'lab', pin: null, cmdline: 'panic=-1' };
const facts = (over: Partial<BootFacts> = {}): BootFacts => ({
  mac: '52:54:00:12:34:56',
  ip: '10.0.2.15',
  serverUrl: 'http://10.0.2.2:8080',
  hit: { assignment, profile, commit: C, kernel: blob('a'), initrd: blob('b') },
  ...over,
});

describe('planBoot', () => {
  it("boots the commit's own kernel and initrd with the server, commit, profile and both command lines", () => {
    expect(planBoot(facts())).toEqual({
      kind: 'boot',
      commit: C,
      profile: 'lab',
      kernel: 'a'.repeat(64),
      initrd: 'b'.repeat(64),
      args: [
        'strata.server=http://10.0.2.2:8080',
        `strata.commit=${C}`,
        'strata.profile=lab',
        'console=ttyS0',
        'quiet',
        'panic=-1',
        'strata.health',
      ],
      banner: `booting lab at ${C.slice(0, 12)} (52:54:00:12:34:56 10.0.2.15)`,
      lease: { mac: '52:54:00:12:34:56', ip: '10.0.2.15', commit: C, profile: 'lab', boot: true, assignment: '52:54:00:12:34:56' },
      heldBack: null,
    });
  });

  it("a commit without its own kernel boots the profile's", () => {
    const p = planBoot(facts({ hit: { assignment, profile, commit: C, kernel: null, initrd: null } }));
    expect(p).toMatchObject({ kind: 'boot', kernel: '1'.repeat(64), initrd: '2'.repeat(64) });
  });

  it('no kernel anywhere: retry, saying how to import one', () => {
    const bare = { ...profile, kernel: null, initrd: null };
    const p = planBoot(facts({ hit: { assignment, profile: bare, commit: C, kernel: null, initrd: null } }));
    expect(p).toEqual({
      kind: 'retry',
      why: 'profile lab has no kernel; import one with strata import lab SOURCE --kernel F --initrd F',
    });
  });

  it('no assignment: retry, naming the client and the command that assigns it', () => {
    expect(planBoot(facts({ hit: null }))).toEqual({
      kind: 'retry',
      why: 'no assignment matches this client (52:54:00:12:34:56 10.0.2.15) and there is no default; run: strata assign 52:54:00:12:34:56 PROFILE',
    });
    expect(planBoot(facts({ hit: null, mac: null }))).toMatchObject({
      why: expect.stringContaining('run: strata assign 10.0.2.15 PROFILE'),
    });
    expect(planBoot(facts({ hit: null, mac: null, ip: null }))).toMatchObject({
      why: expect.stringContaining('(no MAC no IP) and there is no default; run: strata assign default PROFILE'),
    });
  });

  it('a client without a MAC boots but leaves no lease (it cannot be told apart)', () => {
    expect(planBoot(facts({ mac: null }))).toMatchObject({ kind: 'boot', lease: null });
  });
});
