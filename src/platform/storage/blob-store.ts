/**
 * Where backups (and clones' temporary snapshots) are kept: a small interface — put a stream under a name, get it back
 * as a stream, list names — so that an object store (S3, GCS…) can be added beside the directory store without
 * touching the code that writes and reads backups.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface StoredBlob {
  name: string;
  bytes: number;
  modifiedAt: Date;
}

export interface BlobStore {
  /** Where `name` lives, for messages (a path, a URL). */
  describe(name: string): string;
  /** Stores the stream under `name`: all of it or nothing (a partial upload is never visible under `name`). */
  put(name: string, body: Readable): Promise<{ bytes: number }>;
  /** The stored bytes; rejects with `BlobNotFoundError` when there is no such blob. */
  get(name: string): Promise<Readable>;
  /** Names under `prefix` (all without one), sorted. */
  list(prefix?: string): Promise<StoredBlob[]>;
  remove(name: string): Promise<void>;
}

export class BlobNotFoundError extends Error {
  constructor(readonly blob: string) {
    super(`${blob} does not exist`);
    this.name = 'BlobNotFoundError';
  }
}

const PARTIAL = '.partial';

/**
 * A directory (BACKUP_DIR). A name is a path relative to it; an absolute path is taken as is (`--to /mnt/x.gz`).
 * Written to `<name>.partial`, then renamed: a crash never leaves a complete-looking file.
 */
export function createDirectoryStore(dir: string): BlobStore {
  const where = (name: string) => path.resolve(dir, name);
  return {
    describe: where,
    async put(name, body) {
      const file = where(name);
      await mkdir(path.dirname(file), { recursive: true });
      const partial = `${file}${PARTIAL}`;
      try {
        await pipeline(body, createWriteStream(partial, { flags: 'wx' }));
        await rename(partial, file);
      } catch (err) {
        await rm(partial, { force: true });
        throw err;
      }
      return { bytes: (await stat(file)).size };
    },
    async get(name) {
      const file = where(name);
      const found = await stat(file).catch(() => undefined);
      if (!found?.isFile()) throw new BlobNotFoundError(file);
      return createReadStream(file);
    },
    async list(prefix = '') {
      const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw err;
      });
      const out: StoredBlob[] = [];
      for (const e of entries) {
        if (!e.isFile() || !e.name.startsWith(prefix) || e.name.endsWith(PARTIAL)) continue;
        const s = await stat(path.join(dir, e.name));
        out.push({ name: e.name, bytes: s.size, modifiedAt: s.mtime });
      }
      return out.sort((a, b) => a.name.localeCompare(b.name));
    },
    async remove(name) {
      await rm(where(name), { force: true });
    },
  };
}
