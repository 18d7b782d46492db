/** What a kernel command line an admin sets may contain: nothing a boot script would run. */
import { StrataError } from './errors.ts';

/**
 * Why a kernel command line word cannot go on iPXE's `kernel` line, or null.
 * iPXE has no quoting: it reads `;`, `&&` and `||` anywhere in a script line
 * as command separators and a word starting with `#` as a comment (the
 * `|| goto failed` after it would be lost), so such a word would run as
 * commands on the booting machine. GRUB's lines are quoted instead.
 */
export function ipxeUnsafeWord(word: string): string | null {
  if (word.includes(';')) return `"${word}" contains ';', which iPXE runs as a command separator`;
  if (word.includes('&&') || word.includes('||')) return `"${word}" contains && or ||, which iPXE runs as a conditional`;
  if (word.startsWith('#')) return `"${word}" starts with #, which iPXE reads as a comment`;
  return null;
}

/** Refuses a kernel command line that iPXE would read as commands (set time: strata cmdline / assign --cmdline). */
export function checkCmdline(cmdline: string): void {
  for (const w of cmdline.split(/\s+/).filter((x) => x.length > 0)) {
    const why = ipxeUnsafeWord(w);
    if (why) throw new StrataError('E_BAD_ARGUMENT', `kernel command line refused: ${why}; iPXE scripts cannot quote it`, { word: w });
  }
}
