/**
 * The server's incoming/ folder: where an SSH push's archive waits, fsynced,
 * until the baker lands it. The SSH endpoint writes it, the store reads and
 * deletes it, the baker watches the folder: all of them name files here.
 */
import { join } from 'node:path';

/** incoming/ under the data directory. */
export const INCOMING_DIR = 'incoming';

/** The archive of a stored push: <id>.tar.zst (complete and fsynced). */
export const incomingArchive = (incomingDir: string, id: string): string => join(incomingDir, `${id}.tar.zst`);

/**
 * Where the upload streams first; renamed to incomingArchive once fsynced.
 * The name carries the writer's pid so that a cleanup knows an upload whose
 * process died (a crash) from one in progress.
 */
export const incomingTemp = (incomingDir: string, id: string, pid = process.pid): string => join(incomingDir, `${id}.tar.zst.tmp-${pid}`);

/** An upload's temp file name: its push id and writer's pid (null for names from before the pid was added), or null. */
export function parseIncomingTemp(fileName: string): { id: string; pid: number | null } | null {
  const m = /^([A-Za-z0-9_-]{1,64})\.tar\.zst\.tmp(?:-(\d+))?$/.exec(fileName);
  return m ? { id: m[1]!, pid: m[2] ? Number(m[2]) : null } : null;
}

/** The push id of a complete archive's file name, or null (temp files and strangers). */
export function pushIdOfArchive(fileName: string): string | null {
  return /^([A-Za-z0-9_-]{1,64})\.tar\.zst$/.exec(fileName)?.[1] ?? null;
}
