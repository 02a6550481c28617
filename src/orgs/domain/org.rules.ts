/**
 * The input rules of orgs, each named once: the HTTP schemas and the CLI's arguments are built from these, so the two
 * can never accept different values.
 */
import Joi from 'joi';
import { maxChars } from '../../platform/lib/text-rules.js';

/** Largest org id: `orgs.id` is an unsigned INT. */
export const MAX_ORG_ID = 4_294_967_295;
/** Largest grant, adjustment or initial balance in one go. */
export const MAX_CREDITS = 1_000_000_000;
/** Largest per-org delivery cap (deliveries of one org running at once across every worker). */
export const MAX_DELIVERY_CONCURRENCY = 1000;

/** An org id (X-Org-Id, `:id`, CLI `<id>`): a positive integer that fits `orgs.id`. */
export const orgIdRule = Joi.number().integer().min(1).max(MAX_ORG_ID);

/** Org names: 1–100 characters after trimming, no control or format characters. */
export const orgNameRule = maxChars(
  Joi.string()
    .trim()
    .min(1)
    .pattern(/^[^\p{Cc}\p{Cf}]+$/u, 'no control characters'),
  100,
);

/** A new org's balance (`credits` of POST /orgs, `create --credits`). */
export const initialCreditsRule = Joi.number().integer().min(0).max(MAX_CREDITS);

/** A change of balance: a grant (> 0) or an adjustment (< 0), never 0. */
export const creditAmountRule = Joi.number().integer().min(-MAX_CREDITS).max(MAX_CREDITS).invalid(0);

/** An org's own delivery cap (`deliveryConcurrency`, `limits --delivery-concurrency`). */
export const deliveryConcurrencyRule = Joi.number().integer().min(1).max(MAX_DELIVERY_CONCURRENCY);

/** A database server's registry name (`server` of POST /orgs, `servers add <name>`, `move --to`). */
export const serverNameRule = Joi.string().pattern(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - (at most 64)');
