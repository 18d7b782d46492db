/**
 * Pure renderers for the scripts PXE firmware fetches: iPXE and GRUB.
 * Nothing here does I/O; the boot routes decide what to render.
 */
import { ipxeUnsafeWord } from '../store/cmdline-rules.ts';

export interface BootScriptInput {
  /** Base URL clients use, e.g. http://10.0.2.2:8080 (no trailing slash). */
  serverUrl: string;
  kernel: string;
  initrd: string | null;
  /** Kernel command line words, already in order. */
  args: string[];
  /** One line said on the console before loading, e.g. "booting lab at 1a2b3c4". */
  banner: string;
  /** The URL of this script, for the retry after a failed download. */
  selfUrl: string;
  /**
   * GRUB only: load kernel and initrd over TFTP from this directory of the
   * TFTP server GRUB came from, not over HTTP (Debian's signed network GRUB
   * has no http module; server/pxe/secure-boot-tftp.ts).
   */
  tftpObjectsDir?: string;
}

export const RETRY_SECONDS = 30;

/**
 * Firmware scripts are line-oriented: a newline smuggled into an argument
 * would become a command. Control characters are dropped, never passed on.
 */
export function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
}

/** iPXE expands ${...} anywhere in a line; a literal `$` must not start an expansion. */
function ipxeText(s: string): string {
  return oneLine(s).replace(/\$\{/g, '$ {');
}

/** Text for an `echo` line: iPXE would also run `;`, `&&` and `||` there, so they are spelled harmlessly. */
function ipxeMessage(s: string): string {
  return ipxeText(s)
    .replace(/;/g, ',')
    .replace(/&&/g, '& &')
    .replace(/\|\|/g, '| |')
    .replace(/(^|\s)#/g, '$1_#');
}

export function objectUrl(serverUrl: string, digest: string): string {
  return `${serverUrl}/objects/sha256/${digest}`;
}

export const IPXE_INITRD_NAME = 'initrd.img';

export function renderIpxe(b: BootScriptInput): string {
  const words = b.args.map(ipxeText).filter((a) => a.length > 0);
  // Set time refuses these (checkCmdline); a line stored before that is refused here, never run.
  for (const w of words) {
    const why = ipxeUnsafeWord(w);
    if (why) return renderIpxeRetry(`the kernel command line of this client is refused: ${why}; an admin must fix it`, b.selfUrl);
  }
  const args = words.join(' ');
  // UEFI iPXE hands an initrd to the kernel's EFI stub only when the command
  // line names it (initrd=NAME, matching `initrd --name NAME`); without it a
  // UEFI machine's kernel finds no initramfs. BIOS kernels ignore the word.
  const initrdWord = b.initrd ? `initrd=${IPXE_INITRD_NAME} ` : '';
  const lines = [
    '#!ipxe',
    `echo strata: ${ipxeMessage(b.banner)}`,
    'imgfree',
    `kernel ${objectUrl(b.serverUrl, b.kernel)} ${initrdWord}${args} || goto failed`,
  ];
  if (b.initrd) lines.push(`initrd --name ${IPXE_INITRD_NAME} ${objectUrl(b.serverUrl, b.initrd)} || goto failed`);
  lines.push(
    'boot || goto failed',
    ':failed',
    `echo strata: loading the kernel or initrd failed; retrying in ${RETRY_SECONDS} s`,
    `sleep ${RETRY_SECONDS}`,
    `chain ${ipxeText(b.selfUrl)}`,
    '',
  );
  return lines.join('\n');
}

/** The answer for a client that cannot boot now (no assignment, no kernel): say why, wait, ask again. */
export function renderIpxeRetry(reason: string, selfUrl: string): string {
  return [
    '#!ipxe',
    `echo strata: ${ipxeMessage(reason)}`,
    `echo strata: asking again in ${RETRY_SECONDS} s`,
    `sleep ${RETRY_SECONDS}`,
    `chain ${ipxeText(selfUrl)}`,
    '',
  ].join('\n');
}

/** GRUB's network paths are (http,HOST:PORT)/path, not URLs. */
export function grubPath(url: string): string {
  const u = new URL(url);
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  const proto = u.protocol === 'https:' ? 'https' : 'http';
  return `(${proto},${u.hostname}:${port})${u.pathname}${u.search}`;
}

/** Single-quote a word for GRUB's shell-like parser ('\'' as in sh). */
export function grubQuote(s: string): string {
  const t = oneLine(s);
  if (/^[A-Za-z0-9_./:=,+@%()-]+$/.test(t)) return t;
  return `'${t.replace(/'/g, `'\\''`)}'`;
}

/**
 * One entry that boots, and a fallback GRUB runs when it fails (the kernel or
 * initrd could not be downloaded): wait, then reboot, so the machine goes
 * through PXE and asks strata again, like iPXE's retry. Without it GRUB
 * stops at "Press any key to continue", and an unattended machine stays there.
 */
export function renderGrub(b: BootScriptInput): string {
  const args = b.args
    .map(oneLine)
    .filter((a) => a.length > 0)
    .map(grubQuote)
    .join(' ');
  const path = (digest: string) => (b.tftpObjectsDir ? `/${b.tftpObjectsDir}/${digest}` : grubPath(objectUrl(b.serverUrl, digest)));
  const lines = [
    'set timeout=0',
    'set default=0',
    'set fallback=1',
    `menuentry ${grubQuote(`strata: ${b.banner}`)} {`,
    `  echo ${grubQuote(`strata: ${b.banner}`)}`,
    `  linux ${grubQuote(path(b.kernel))} ${args}`,
  ];
  if (b.initrd) lines.push(`  initrd ${grubQuote(path(b.initrd))}`);
  lines.push(
    '}',
    `menuentry ${grubQuote('strata: the kernel or initrd did not load')} {`,
    `  echo ${grubQuote(`strata: could not load the kernel or initrd from ${b.serverUrl}; rebooting in ${RETRY_SECONDS} s to ask again`)}`,
    `  sleep ${RETRY_SECONDS}`,
    '  reboot',
    '}',
    '',
  );
  return lines.join('\n');
}

/**
 * No menu entry: GRUB's `configfile` returns once a config without entries
 * has run, back into the `while true` loop of the grub.cfg that
 * `strata grub-cfg` prints, which asks again. Asking again from here
 * (`configfile` of this URL) would nest one config per retry, and a machine
 * left unassigned for a night would run GRUB out of stack. `selfUrl` is
 * named in the message so the admin sees which address the machine asks.
 */
export function renderGrubRetry(reason: string, selfUrl: string): string {
  return [
    `echo ${grubQuote(`strata: ${reason}`)}`,
    `echo ${grubQuote(`strata: asking ${grubPath(selfUrl)} again in ${RETRY_SECONDS} s`)}`,
    `sleep ${RETRY_SECONDS}`,
    '',
  ].join('\n');
}
