/**
 * Builds small live ISOs with xorriso in the layouts strata imports, with tiny
 * fake kernels and initrds and REAL small squashfs root filesystems that hold a
 * recognisable marker file. Each fixture says which inner paths inspectIso
 * should pick (or that it must be refused).
 */
import { mkdir, writeFile, readFile, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import type { IsoContents } from '../../store/iso-layout.ts';

export type IsoFixture =
  | 'debian-live' // two kernel versions: the newest pair wins
  | 'debian-live-iso9660' // same, plain ISO 9660 without Rock Ridge/Joliet: upper-case names
  | 'ubuntu-casper' // classic casper/filesystem.squashfs
  | 'ubuntu-casper-layered' // Ubuntu >= 23.04 layered squashfs, grub.cfg names the default layer
  | 'ubuntu-casper-layered-nohint' // the same without a boot config: the heuristic picks the chain
  | 'fedora-liveos' // LiveOS/squashfs.img + images/pxeboot
  | 'fedora-liveos-loader' // LiveOS/squashfs.img + boot/x86_64/loader/{linux,initrd}
  | 'fedora-nested' // squashfs.img that only holds LiveOS/rootfs.img: must be refused
  | 'alt' // syslinux/alt0 + both /live and /altinst: live wins
  | 'alt-altinst' // only /altinst
  | 'unknown'; // an Arch-like ISO: no layout strata knows

export interface BuiltIso {
  iso: string;
  /** Every regular file put in the ISO, by inner path (no leading slash), with its bytes. */
  files: Map<string, Buffer>;
  /** What inspectIso must return; undefined when the ISO must be refused. */
  expected?: IsoContents;
  /** Text of etc/strata-marker inside the (expected) root squashfs. */
  marker: string;
}

/** A fake kernel or initrd: a recognisable head and a little random tail, ~4 KiB. */
const blob = (label: string) => Buffer.concat([Buffer.from(`${label}\n`), randomBytes(4000)]);

/** Builds a real squashfs (zstd) holding `tree` and returns its bytes. */
export async function makeSquashfs(tree: Record<string, string | Buffer>): Promise<Buffer> {
  const work = await mkdtemp(join(tmpdir(), 'strata-mksq-'));
  try {
    const root = join(work, 'root');
    await mkdir(root);
    for (const [p, content] of Object.entries(tree)) {
      await mkdir(dirname(join(root, p)), { recursive: true });
      await writeFile(join(root, p), content);
    }
    const out = join(work, 'out.sqfs');
    await execa('mksquashfs', [root, out, '-comp', 'zstd', '-noappend', '-quiet', '-no-progress'], { stdin: 'ignore' });
    return await readFile(out);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes `files` under a staging dir and makes an ISO of it. `plain`: ISO 9660 names only. */
export async function buildIso(workDir: string, name: string, files: Map<string, Buffer>, plain = false): Promise<string> {
  const stage = join(workDir, `${name}.d`);
  await mkdir(stage, { recursive: true });
  for (const [p, content] of files) {
    await mkdir(dirname(join(stage, p)), { recursive: true });
    await writeFile(join(stage, p), content);
  }
  const iso = join(workDir, `${name}.iso`);
  if (plain) {
    // No Rock Ridge, no Joliet: readers see the upper-cased ISO 9660 names.
    await execa(
      'xorriso',
      ['-no_rc', '-report_about', 'SORRY', '-outdev', iso, '-rockridge', 'off', '-joliet', 'off', '-map', stage, '/'],
      { stdin: 'ignore' },
    );
  } else {
    await execa('xorriso', ['-as', 'mkisofs', '-quiet', '-R', '-J', '-o', iso, stage], { stdin: 'ignore' });
  }
  await rm(stage, { recursive: true, force: true });
  return iso;
}

const rootTree = (marker: string) => ({
  'etc/strata-marker': marker,
  'etc/os-release': 'NAME=fixture\n',
  'usr/bin/hello': '#!/bin/sh\necho hello\n',
});

export async function makeIso(workDir: string, fixture: IsoFixture): Promise<BuiltIso> {
  const marker = `strata iso fixture ${fixture} ${randomBytes(4).toString('hex')}\n`;
  const files = new Map<string, Buffer>();
  let expected: IsoContents | undefined;
  const rootfs = () => makeSquashfs(rootTree(marker));
  const grub = (extra = '') => Buffer.from(`menuentry "Live" {\n  linux /boot/vmlinuz ${extra} quiet\n}\n`);

  switch (fixture) {
    case 'debian-live':
    case 'debian-live-iso9660': {
      files.set('live/vmlinuz-6.1.0-9-amd64', blob('old kernel'));
      files.set('live/initrd.img-6.1.0-9-amd64', blob('old initrd'));
      files.set('live/vmlinuz-6.1.0-18-amd64', blob('new kernel'));
      files.set('live/initrd.img-6.1.0-18-amd64', blob('new initrd'));
      files.set('live/filesystem.squashfs', await rootfs());
      files.set('live/filesystem.packages', Buffer.from('bash 5.2\n'));
      files.set('boot/grub/grub.cfg', grub('boot=live components'));
      files.set('isolinux/isolinux.cfg', Buffer.from('default live\n'));
      // For the plain ISO 9660 variant the test maps names itself (they are upper-cased).
      expected = {
        layout: 'debian-live',
        kernel: 'live/vmlinuz-6.1.0-18-amd64',
        initrd: 'live/initrd.img-6.1.0-18-amd64',
        rootfs: 'live/filesystem.squashfs',
      };
      break;
    }
    case 'ubuntu-casper': {
      files.set('casper/vmlinuz', blob('casper kernel'));
      files.set('casper/initrd', blob('casper initrd'));
      files.set('casper/hwe-vmlinuz', blob('hwe kernel'));
      files.set('casper/hwe-initrd', blob('hwe initrd'));
      files.set('casper/filesystem.squashfs', await rootfs());
      files.set('casper/filesystem.manifest', Buffer.from('bash 5.2\n'));
      files.set('casper/filesystem.size', Buffer.from('12345\n'));
      files.set('.disk/info', Buffer.from('Ubuntu fixture\n'));
      files.set('boot/grub/grub.cfg', grub('boot=casper'));
      expected = { layout: 'ubuntu-casper', kernel: 'casper/vmlinuz', initrd: 'casper/initrd', rootfs: 'casper/filesystem.squashfs' };
      break;
    }
    case 'ubuntu-casper-layered':
    case 'ubuntu-casper-layered-nohint': {
      files.set('casper/vmlinuz', blob('casper kernel'));
      files.set('casper/initrd', blob('casper initrd'));
      // The base holds the marker; upper layers hold only what they add.
      files.set('casper/minimal.squashfs', await rootfs());
      files.set('casper/minimal.standard.squashfs', await makeSquashfs({ 'usr/bin/standard': 'std\n' }));
      files.set('casper/minimal.standard.live.squashfs', await makeSquashfs({ 'usr/bin/installer': 'inst\n' }));
      files.set('casper/minimal.en.squashfs', await makeSquashfs({ 'usr/share/locale/en/x': 'en\n' }));
      files.set('casper/minimal.standard.en.squashfs', await makeSquashfs({ 'usr/share/locale/en/y': 'en\n' }));
      files.set('casper/minimal.standard.live.en.squashfs', await makeSquashfs({ 'usr/share/locale/en/z': 'en\n' }));
      files.set('casper/minimal.enhanced-secureboot.squashfs', await makeSquashfs({ 'usr/lib/sb': 'sb\n' }));
      if (fixture === 'ubuntu-casper-layered') {
        // The default entry boots the standard system without the live layer;
        // the hint must win over the heuristic (which would pick ...live).
        files.set(
          'boot/grub/grub.cfg',
          Buffer.from(
            'menuentry "Try" {\n  linux /casper/vmlinuz layerfs-path=minimal.standard.squashfs --- quiet splash\n}\n' +
              'menuentry "Live" {\n  linux /casper/vmlinuz layerfs-path=minimal.standard.live.squashfs ---\n}\n',
          ),
        );
      }
      const layers =
        fixture === 'ubuntu-casper-layered'
          ? ['casper/minimal.squashfs', 'casper/minimal.standard.squashfs']
          : ['casper/minimal.squashfs', 'casper/minimal.standard.squashfs', 'casper/minimal.standard.live.squashfs'];
      expected = { layout: 'ubuntu-casper', kernel: 'casper/vmlinuz', initrd: 'casper/initrd', rootfs: 'casper/minimal.squashfs', layers };
      break;
    }
    case 'fedora-liveos':
    case 'fedora-liveos-loader':
    case 'fedora-nested': {
      files.set(
        'LiveOS/squashfs.img',
        fixture === 'fedora-nested'
          ? // Old Fedora: the squashfs only wraps an ext4 image. Detection goes by the
            // names, so a small zero-filled stand-in for the ext4 image is enough.
            await makeSquashfs({ 'LiveOS/rootfs.img': Buffer.alloc(256 * 1024) })
          : await rootfs(),
      );
      if (fixture === 'fedora-liveos-loader') {
        files.set('boot/x86_64/loader/linux', blob('fedora loader kernel'));
        files.set('boot/x86_64/loader/initrd', blob('fedora loader initrd'));
        expected = {
          layout: 'fedora-liveos',
          kernel: 'boot/x86_64/loader/linux',
          initrd: 'boot/x86_64/loader/initrd',
          rootfs: 'LiveOS/squashfs.img',
        };
      } else {
        files.set('images/pxeboot/vmlinuz', blob('fedora kernel'));
        files.set('images/pxeboot/initrd.img', blob('fedora initrd'));
        files.set('EFI/BOOT/grub.cfg', grub('root=live:CDLABEL=Fedora rd.live.image'));
        if (fixture === 'fedora-liveos') {
          expected = {
            layout: 'fedora-liveos',
            kernel: 'images/pxeboot/vmlinuz',
            initrd: 'images/pxeboot/initrd.img',
            rootfs: 'LiveOS/squashfs.img',
          };
        }
      }
      break;
    }
    case 'alt':
    case 'alt-altinst': {
      files.set('syslinux/alt0/vmlinuz', blob('alt kernel'));
      files.set('syslinux/alt0/full.cz', blob('alt initrd'));
      files.set('syslinux/isolinux.cfg', Buffer.from('default live\n'));
      if (fixture === 'alt') {
        files.set('live', await rootfs());
        // The installer image: a different squashfs that must NOT be picked.
        files.set('altinst', await makeSquashfs({ 'etc/strata-marker': 'installer, not the live system\n' }));
        expected = { layout: 'alt', kernel: 'syslinux/alt0/vmlinuz', initrd: 'syslinux/alt0/full.cz', rootfs: 'live' };
      } else {
        files.set('altinst', await rootfs());
        expected = { layout: 'alt', kernel: 'syslinux/alt0/vmlinuz', initrd: 'syslinux/alt0/full.cz', rootfs: 'altinst' };
      }
      break;
    }
    case 'unknown': {
      files.set('arch/boot/x86_64/vmlinuz-linux', blob('arch kernel'));
      files.set('arch/boot/x86_64/initramfs-linux.img', blob('arch initramfs'));
      files.set('arch/x86_64/airootfs.sfs', await rootfs());
      files.set('EFI/BOOT/BOOTx64.EFI', blob('efi'));
      files.set('boot/syslinux/syslinux.cfg', Buffer.from('default arch\n'));
      break;
    }
  }
  const iso = await buildIso(workDir, fixture, files, fixture === 'debian-live-iso9660');
  return { iso, files, expected, marker };
}
