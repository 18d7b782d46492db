/**
 * Recipes: the TOML file `strata build PROFILE --recipe FILE` reads to make a
 * base with mmdebstrap. TOML like the service config file (smol-toml), and
 * checked the same way: every mistake is reported as LINE: KEY: what is
 * wrong, all at once, before anything runs.
 *
 * Pure: text in, a checked recipe (or the problems) out, and the mmdebstrap
 * command line for it. Running it is store/build.ts's job.
 *
 *   suite = "bookworm"                       # required: a Debian or Ubuntu suite
 *   mirror = "http://deb.debian.org/debian"  # optional: mmdebstrap picks the suite's default
 *   variant = "minbase"                      # optional (default minbase)
 *   components = ["main"]                    # optional
 *   packages = ["less", "procps"]
 *   kernel = "linux-image-cloud-amd64"       # optional: the kernel package (the tree's kernel boots)
 *   customize = ["echo lab > \"$1/etc/hostname\""]   # shell, $1 is the tree
 *   [[files]]                                # files to add after the packages
 *   path = "/etc/motd"
 *   content = "built by strata\n"
 *   mode = "0644"                            # optional (default 0644)
 */
import { parse, TomlError } from 'smol-toml';
import { StrataError } from './errors.ts';

export interface RecipeFile {
  path: string;
  content: string;
  mode: number;
}

export interface Recipe {
  suite: string;
  mirror: string | null;
  variant: string;
  components: string[];
  packages: string[];
  kernel: string | null;
  customize: string[];
  files: RecipeFile[];
}

export interface RecipeProblem {
  line: number;
  key: string;
  message: string;
}

/** mmdebstrap's variants (mmdebstrap(1), "--variant"). */
export const VARIANTS = ['extract', 'custom', 'essential', 'apt', 'required', 'minbase', 'buildd', 'important', 'debootstrap', 'standard'];

// Debian package names (Policy 5.6.1), optionally with =version or /release.
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+(?:[=/][A-Za-z0-9.+~:_-]+)?$/;
const SUITE_RE = /^[a-z][a-z0-9.-]{1,40}$/;
const COMPONENT_RE = /^[a-z][a-z0-9-]{0,40}$/;

const KEYS = ['suite', 'mirror', 'variant', 'components', 'packages', 'kernel', 'customize', 'files'];
const FILE_KEYS = ['path', 'content', 'mode'];

function show(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (v !== null && typeof v === 'object') return 'a table';
  return typeof v === 'string' ? `"${v}"` : String(v);
}

/**
 * The line each top-level key and each [[files]] entry's keys are written
 * on (files.N.key). TOML is line-oriented, so a scan is enough.
 */
function keyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let prefix = '';
  let files = -1;
  text.split(/\r?\n/).forEach((raw, i) => {
    if (/^\s*\[\[\s*files\s*\]\]/.test(raw)) {
      files++;
      prefix = `files.${files}.`;
      lines.set(`files.${files}`, i + 1);
      if (!lines.has('files')) lines.set('files', i + 1);
      return;
    }
    const header = /^\s*\[\s*([^[\]]+?)\s*\]/.exec(raw);
    if (header) {
      prefix = `${header[1]}.`;
      if (!lines.has(header[1])) lines.set(header[1], i + 1);
      return;
    }
    const kv = /^\s*([A-Za-z0-9_-]+|"[^"]*")\s*=/.exec(raw);
    if (kv) {
      const key = prefix + kv[1].replace(/^"(.*)"$/, '$1');
      if (!lines.has(key)) lines.set(key, i + 1);
    }
  });
  return lines;
}

function lineOf(lines: Map<string, number>, key: string): number {
  for (let k = key; k; k = k.includes('.') ? k.slice(0, k.lastIndexOf('.')) : '') {
    const n = lines.get(k);
    if (n) return n;
  }
  return 1;
}

/** Checks a recipe's text: the recipe, or every problem found. */
export function checkRecipe(text: string): { recipe: Recipe | null; problems: RecipeProblem[] } {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError)
      return { recipe: null, problems: [{ line: e.line, key: '', message: `not valid TOML: ${e.message.split('\n')[0]}` }] };
    throw e;
  }
  const lines = keyLines(text);
  const problems: RecipeProblem[] = [];
  const problem = (key: string, message: string) => problems.push({ line: lineOf(lines, key), key, message });
  const str = (key: string, re: RegExp, what: string): string | null => {
    const v = doc[key];
    if (v === undefined) return null;
    if (typeof v !== 'string' || !re.test(v)) {
      problem(key, `must be ${what}, not ${show(v)}`);
      return null;
    }
    return v;
  };
  const list = (key: string, re: RegExp | null, what: string): string[] => {
    const v = doc[key];
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      problem(key, `must be an array of ${what}, not ${show(v)}`);
      return [];
    }
    const ok: string[] = [];
    for (const x of v) {
      if (typeof x === 'string' && (re ? re.test(x) : x.trim() !== '')) ok.push(x);
      else problem(key, `${show(x)} is not ${what}`);
    }
    return ok;
  };

  for (const k of Object.keys(doc)) if (!KEYS.includes(k)) problem(k, `unknown key (known keys: ${KEYS.join(', ')})`);
  const suite = str('suite', SUITE_RE, 'a suite name such as "bookworm" or "noble"');
  if (doc.suite === undefined) problem('suite', 'is required (e.g. suite = "bookworm")');
  let mirror: string | null = null;
  if (doc.mirror !== undefined) {
    const v = doc.mirror;
    let ok = false;
    try {
      ok = typeof v === 'string' && ['http:', 'https:', 'file:'].includes(new URL(v).protocol) && !/\s/.test(v);
    } catch {}
    if (ok) mirror = v as string;
    else problem('mirror', `must be an http://, https:// or file:// URL, not ${show(v)}`);
  }
  const variant = doc.variant === undefined ? 'minbase' : str('variant', /^[a-z]+$/, `one of ${VARIANTS.join(', ')}`);
  if (variant && !VARIANTS.includes(variant)) problem('variant', `must be one of ${VARIANTS.join(', ')}, not "${variant}"`);
  // Measured with mmdebstrap 1.3.5: the extract variant only unpacks and runs no customize hooks, so files and commands would be dropped silently.
  if (variant === 'extract' && (doc.customize !== undefined || doc.files !== undefined))
    problem('variant', 'the extract variant runs no customize commands and adds no files; use "essential" or a larger variant');
  const components = list('components', COMPONENT_RE, 'a component name such as "main"');
  const packages = list('packages', PACKAGE_RE, 'a Debian package name');
  const kernel = str('kernel', PACKAGE_RE, 'a kernel package name such as "linux-image-cloud-amd64"');
  const customize = list('customize', null, 'a shell command');
  const files: RecipeFile[] = [];
  if (doc.files !== undefined) {
    if (!Array.isArray(doc.files)) problem('files', `must be an array of tables ([[files]]), not ${show(doc.files)}`);
    else
      doc.files.forEach((f, i) => {
        const key = `files.${i}`;
        if (f === null || typeof f !== 'object' || Array.isArray(f)) {
          problem(key, `must be a table, not ${show(f)}`);
          return;
        }
        const o = f as Record<string, unknown>;
        for (const k of Object.keys(o)) if (!FILE_KEYS.includes(k)) problem(`${key}.${k}`, `unknown key (known: ${FILE_KEYS.join(', ')})`);
        const path = o.path;
        const pathOk =
          typeof path === 'string' && path.startsWith('/') && path.length > 1 && !path.split('/').includes('..') && !/[\0\n]/.test(path);
        if (!pathOk) problem(`${key}.path`, `must be an absolute path without "..", not ${show(path)}`);
        if (typeof o.content !== 'string') problem(`${key}.content`, `must be a string, not ${show(o.content)}`);
        let mode = 0o644;
        if (o.mode !== undefined) {
          if (typeof o.mode === 'string' && /^0?[0-7]{3,4}$/.test(o.mode)) mode = Number.parseInt(o.mode, 8);
          else problem(`${key}.mode`, `must be an octal string such as "0644", not ${show(o.mode)}`);
        }
        if (pathOk && typeof o.content === 'string') files.push({ path: path as string, content: o.content, mode });
      });
  }
  problems.sort((a, b) => a.line - b.line);
  if (problems.length || !suite || !variant) return { recipe: null, problems };
  return { recipe: { suite, mirror, variant, components, packages, kernel, customize, files }, problems };
}

/** The recipe, or an E_BAD_RECIPE error listing every problem as NAME:LINE: KEY: message. */
export function parseRecipe(name: string, text: string): Recipe {
  const { recipe, problems } = checkRecipe(text);
  if (!recipe || problems.length) {
    const list = problems.map((p) => `${name}:${p.line}: ${p.key ? `${p.key}: ` : ''}${p.message}`).join('\n');
    throw new StrataError('E_BAD_RECIPE', `${name} has ${problems.length} problem(s):\n${list}`, { problems });
  }
  return recipe;
}

const UPDATE_INITRAMFS = '/usr/sbin/update-initramfs';
/** Variants with dpkg in the tree (extract runs no hooks after unpacking; custom installs only what it is told). */
const DIVERTS_INITRAMFS = new Set(VARIANTS.filter((v) => v !== 'extract' && v !== 'custom'));

/**
 * mmdebstrap hooks that keep Debian's initramfs from being made. strata
 * boots every tree with an initramfs it makes from the tree's own modules
 * (store/initrd-image.ts), so the one the kernel package and initramfs-tools'
 * trigger would make is never used: making it cost a minute of a 2-core
 * build and tens of MB in the image. The tool is diverted to `true` while
 * packages install (as debootstrap diverts start-stop-daemon) and put back
 * before the recipe's own files and commands, so they, and apt on a booted
 * client, find the real one.
 */
export function skipDebianInitramfs(): string[] {
  return [
    `--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add ${UPDATE_INITRAMFS} && ln -s /bin/true "$1"${UPDATE_INITRAMFS}`,
    `--customize-hook=rm -f "$1"${UPDATE_INITRAMFS} && chroot "$1" dpkg-divert --quiet --local --rename --remove ${UPDATE_INITRAMFS}`,
  ];
}

/** Shell-quotes one word for a hook command line (mmdebstrap runs hooks with sh -c). */
export const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface MmdebstrapPlan {
  args: string[];
  /** Files to write before running: hooks `upload` them into the tree. */
  uploads: { local: string; content: string }[];
}

/**
 * mmdebstrap's command line for RECIPE writing OUTPUT (a .tar), with the
 * shared apt cache CACHEDIR synced in before and out after (the cache hooks of
 * mmdebstrap(1), "EXAMPLES"; docs/decisions.md, "The apt cache of builds").
 * TMPDIR holds the files the recipe adds.
 */
export function mmdebstrapPlan(recipe: Recipe, opts: { output: string; cacheDir: string; tmpDir: string }): MmdebstrapPlan {
  const include = [...recipe.packages, ...(recipe.kernel ? [recipe.kernel] : [])];
  const args = ['--verbose', `--variant=${recipe.variant}`, '--mode=auto', '--format=tar'];
  if (recipe.components.length) args.push(`--components=${recipe.components.join(',')}`);
  if (include.length) args.push(`--include=${include.join(',')}`);
  // Keep downloaded .debs: the cache is synced out after the packages are in.
  args.push('--skip=download/empty', '--skip=essential/unlink');
  // No fsync per unpacked file (the tar is baked and fsynced as a whole);
  // the option file is removed again below so the image's dpkg stays safe.
  args.push('--dpkgopt=force-unsafe-io');
  args.push(`--setup-hook=mkdir -p ${shq(opts.cacheDir)} "$1"/var/cache/apt/archives/`);
  args.push(`--setup-hook=sync-in ${shq(opts.cacheDir)} /var/cache/apt/archives/`);
  // Out of the tree, into the cache, first: a build whose own commands fail
  // still leaves what it downloaded for the next try.
  args.push(`--customize-hook=sync-out /var/cache/apt/archives ${shq(opts.cacheDir)}`);
  args.push(
    '--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/archives/partial/*.deb "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap',
  );
  if (DIVERTS_INITRAMFS.has(recipe.variant)) args.push(...skipDebianInitramfs());
  const uploads: MmdebstrapPlan['uploads'] = [];
  recipe.files.forEach((f, i) => {
    const local = `${opts.tmpDir}/file-${i}`;
    uploads.push({ local, content: f.content });
    const dir = f.path.slice(0, f.path.lastIndexOf('/')) || '/';
    args.push(`--customize-hook=mkdir -p "$1"${shq(dir)}`);
    args.push(`--customize-hook=upload ${shq(local)} ${shq(f.path)}`);
    args.push(`--customize-hook=chmod ${f.mode.toString(8)} "$1"${shq(f.path)}`);
  });
  for (const c of recipe.customize) args.push(`--customize-hook=${c}`);
  args.push(recipe.suite, opts.output);
  if (recipe.mirror) args.push(recipe.mirror);
  return { args, uploads };
}
