/**
 * What `npm start` prints. Every command line in it must work when pasted
 * into a shell as printed (test/demo-start.test.ts runs each in `sh -c`):
 * the words a remote command needs are quoted for the server's split too
 * (protocol/ssh-push.ts), and the strata command lines name the data
 * directory the demo really serves. Placeholders are UPPER-CASE words:
 * NAME, KEY.pub, UPPER.
 */
import { isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shellQuote } from '../protocol/ssh-push.ts';

export interface DemoHintInput {
  dataDir: string;
  hostPart: string;
  httpPort: number;
  sshPort: number;
  token: string;
  /** Where the shell the lines are pasted into runs (default: this process's cwd). */
  cwd?: string;
}

const STRATA_BIN = fileURLToPath(new URL('../bin/strata', import.meta.url));

/** `bin/strata` as the user should type it from `cwd`, with --data unless it is the default ./strata-data. */
export function strataCommand(dataDir: string, cwd = process.cwd()): string {
  const rel = relative(cwd, STRATA_BIN);
  const bin = isAbsolute(rel) || rel.startsWith('..') ? STRATA_BIN : rel.includes('/') ? rel : `./${rel}`;
  const words = [shellQuote(bin)];
  // The same default as cli/main.ts's --data.
  if (resolve(cwd, process.env.STRATA_DATA ?? 'strata-data') !== resolve(dataDir)) words.push('--data', shellQuote(dataDir));
  return words.join(' ');
}

export function demoHints(o: DemoHintInput): string {
  const strata = strataCommand(o.dataDir, o.cwd);
  const { hostPart, httpPort: hport, sshPort: sport } = o;
  // The remote command is one double-quoted word: $(...) runs here, the inner quotes reach the server's word split.
  const push = `push demo --parent $(${strata} rev-parse demo) -m 'my change'`;
  return `
strata is serving ${o.dataDir}
  web UI and API   http://${hostPart}:${hport}/   (admin token: ${o.token})
  boot script      http://${hostPart}:${hport}/v1/boot/ipxe
  SSH pushes       ssh -p ${sport} strata@127.0.0.1

Boot a diskless QEMU VM from it (QEMU's iPXE ROM, user networking, host = 10.0.2.2):
  mkdir -p /tmp/strata-tftp && printf '#!ipxe\\ndhcp\\nchain http://10.0.2.2:${hport}/v1/boot/ipxe?mac=\${net0/mac}\\n' > /tmp/strata-tftp/boot.ipxe
  qemu-system-x86_64 -accel tcg -m 512 -nographic -netdev user,id=n0,tftp=/tmp/strata-tftp,bootfile=boot.ipxe -device virtio-net-pci,netdev=n0 -boot n

Push a change (any machine with tar, zstd and ssh); allow its key first:
  ${strata} keys add NAME KEY.pub --profile demo
  tar --xattrs --xattrs-include='*' --sort=name -C UPPER -cf - . | zstd | ssh -p ${sport} strata@127.0.0.1 "${push}"
Then:
  ${strata} log demo
`;
}
