/** utcDateTime writes a Date exactly as mysql2 does on the tenant connections ('+00:00'), quotes aside. */
import { expect } from 'chai';
import mysql from 'mysql2';
import { utcDateTime } from '../../../src/platform/db/lean-query.js';

describe('utcDateTime (unit)', () => {
  it("matches mysql2's own DATETIME literal for a fixed set of instants (milliseconds, midnight, leap day, epoch)", () => {
    const instants = [0, 951_782_400_000, 1_709_164_799_999, 1_767_225_600_123, Date.UTC(2026, 11, 7, 4, 5, 6, 7)];
    for (const t of instants) {
      const d = new Date(t);
      expect(`'${utcDateTime(d)}'`, d.toISOString()).to.equal(mysql.format('?', [d], false, '+00:00'));
    }
  });
});
