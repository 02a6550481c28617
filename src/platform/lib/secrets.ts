/** Secrets at rest (AES-256-GCM), random credentials, API-key hashing and constant-time comparison. */
import { createCipheriv, createDecipheriv, createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface SecretBox {
  encrypt(plain: string): string;
  decrypt(sealed: string): string;
}

/** AES-256-GCM with a key derived from SECRET_KEY; output `v1.<iv>.<tag>.<ciphertext>` in base64url. */
export function createSecretBox(secretKey: string): SecretBox {
  const key = createHash('sha256').update(`tenancy:secret-box:${secretKey}`).digest();
  return {
    encrypt(plain) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return ['v1', iv, cipher.getAuthTag(), data].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
    },
    decrypt(sealed) {
      const [version, iv, tag, data] = sealed.split('.');
      if (version !== 'v1' || !iv || !tag || data === undefined) throw new Error('sealed secret has an unknown format');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}

/** A random password for a tenant's MySQL user (32 random bytes, URL-safe). */
export function randomPassword(): string {
  return randomBytes(32).toString('base64url');
}

/** SHA-256 hex digest. */
export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Compares two strings in constant time (hashing first so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/**
 * Whether `key` hashes to `hashHex` (a stored sha256 hex digest), compared in constant time: one hash of the key, where
 * `safeEqual(hashHex, sha256(key))` takes three (the digests' lengths are fixed, so nothing leaks through them).
 */
export function matchesHash(key: string, hashHex: string): boolean {
  const stored = Buffer.from(hashHex, 'hex');
  const presented = hash('sha256', key, 'buffer'); // one-shot: no Hash object (Node >= 20.12)
  return stored.length === presented.length && timingSafeEqual(stored, presented);
}

/** API keys look like `tk_<prefix>_<secret>`: a 12-char public prefix and 32 random bytes. */
export const API_KEY_PATTERN = /^tk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

/** Generates a new API key; the key is shown once, only its hash is stored. */
export function generateApiKey(): { key: string; prefix: string; hash: string } {
  const prefix = randomBytes(9)
    .toString('base64url')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '0')
    .slice(0, 12);
  const key = `tk_${prefix}_${randomBytes(32).toString('base64url')}`;
  return { key, prefix, hash: sha256(key) };
}
