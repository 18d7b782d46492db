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

/** Where the upload streams first; renamed to incomingArchive once fsynced. */
export const incomingTemp = (incomingDir: string, id: string): string => join(incomingDir, `${id}.tar.zst.tmp`);

/** The push id of a complete archive's file name, or null (temp files and strangers). */
export function pushIdOfArchive(fileName: string): string | null {
  return /^([A-Za-z0-9_-]{1,64})\.tar\.zst$/.exec(fileName)?.[1] ?? null;
}
