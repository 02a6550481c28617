/** The optional Idempotency-Key request header. */
import { badRequest } from '../lib/errors.js';
import type { AppContext } from './types.js';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** Reads an optional Idempotency-Key header (printable ASCII, ≤ 255); 400 INVALID_IDEMPOTENCY_KEY otherwise. */
export function idempotencyKey(ctx: AppContext): string | undefined {
  const key = ctx.get('Idempotency-Key');
  if (!key) return undefined;
  if (!IDEMPOTENCY_KEY.test(key)) throw badRequest('INVALID_IDEMPOTENCY_KEY', 'Idempotency-Key must be 1–255 printable ASCII characters');
  return key;
}
