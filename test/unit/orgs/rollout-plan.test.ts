/** The pure parts of fleet rollouts: the waves, schema differences, the name prefix of a server's tenants, the bar. */
import { expect } from 'chai';
import { createProgressBar, formatDuration } from '../../../src/platform/cli/progress-bar.js';
import { planWaves } from '../../../src/orgs/domain/fleet-migrations.js';
import { tableCacheAdvice } from '../../../src/orgs/domain/schema-doctor.js';
import { commonPrefix, diffShapes, likePrefix, type SchemaShape } from '../../../src/orgs/domain/schema-shapes.js';

const refs = (n: number, servers = 1) =>
  Array.from({ length: n }, (_, i) => ({ serverId: (i % servers) + 1, dbName: `tenant_${i + 1}`, orgId: i + 1 }));
const sizes = (waves: { wave: number }[]) =>
  waves.reduce<number[]>((out, w) => {
    out[w.wave] = (out[w.wave] ?? 0) + 1;
    return out;
  }, []);

const shape = (tables: Record<string, { columns?: Record<string, string>; indexes?: Record<string, string> }>): SchemaShape =>
  new Map(
    Object.entries(tables).map(([t, s]) => [
      t,
      { columns: new Map(Object.entries(s.columns ?? {})), indexes: new Map(Object.entries(s.indexes ?? {})) },
    ]),
  );

describe('rollout plan and schema differences (unit)', () => {
  describe('planWaves', () => {
    it('a canary of 100 over 10,000 tenants, then waves ten times larger: 100, 1,000, 8,900', () => {
      expect(sizes(planWaves(refs(10_000), 100))).to.deep.equal([100, 1000, 8900]);
    });

    it('a canary of 1 over 3 tenants: [1], then the other 2; in org-id order on one server', () => {
      const w = planWaves(refs(3), 1);
      expect(w.map((x) => [x.orgId, x.wave])).to.deep.equal([
        [1, 0],
        [2, 1],
        [3, 1],
      ]);
    });

    it('every wave takes tenants of every server in turn (round-robin), so the canary touches each server', () => {
      const w = planWaves(refs(12, 3), 3);
      expect(w.filter((x) => x.wave === 0).map((x) => x.serverId)).to.deep.equal([1, 2, 3]);
      expect(sizes(w)).to.deep.equal([3, 9]);
    });

    it('no canary (0): one wave with everything', () => {
      expect(new Set(planWaves(refs(5), 0).map((x) => x.wave))).to.deep.equal(new Set([1]));
    });
  });

  describe('diffShapes', () => {
    const reference = shape({
      messages: {
        columns: { id: 'bigint(20) unsigned NOT NULL auto_increment', status: 'varchar(16) NOT NULL' },
        indexes: { PRIMARY: 'UNIQUE (id)', messages_status_id: '(status, id)' },
      },
    });

    it('the same schema: no difference', () => {
      expect(diffShapes(reference, reference)).to.deep.equal([]);
    });

    it('a missing column, a dropped index, a changed type and an extra table are each one line', () => {
      const actual = shape({
        messages: { columns: { id: 'bigint(20) unsigned NOT NULL auto_increment' }, indexes: { PRIMARY: 'UNIQUE (id)' } },
        stray: { columns: { x: 'int(11) NULL' } },
      });
      expect(diffShapes(actual, reference)).to.deep.equal([
        'messages: missing column status varchar(16) NOT NULL',
        'messages: missing index messages_status_id (status, id)',
        'unexpected table stray',
      ]);
      const changed = shape({
        messages: {
          columns: { id: 'bigint(20) unsigned NOT NULL auto_increment', status: 'varchar(32) NOT NULL' },
          indexes: { PRIMARY: 'UNIQUE (id)', messages_status_id: '(status, id)', extra: '(status)' },
        },
      });
      expect(diffShapes(changed, reference)).to.deep.equal([
        'messages: column status is varchar(32) NOT NULL, expected varchar(16) NOT NULL',
        'messages: unexpected index extra (status)',
      ]);
    });

    it('a missing table', () => {
      expect(diffShapes(new Map(), reference)).to.deep.equal(['missing table messages']);
    });
  });

  describe('names', () => {
    it('the common prefix of a server tenants, as a LIKE pattern with _ and % escaped', () => {
      expect(commonPrefix(['tenant_1', 'tenant_12', 'tenant_2'])).to.equal('tenant_');
      expect(commonPrefix([])).to.equal('');
      expect(likePrefix('tenant_')).to.equal('tenant\\_%');
      expect(likePrefix('a%b')).to.equal('a\\%b%');
    });
  });

  describe('the progress bar', () => {
    it('shows done/total, the share, the rate and the ETA from a clock, and the failures', () => {
      let now = 0;
      const lines: string[] = [];
      const bar = createProgressBar(
        100,
        (line) => lines.push(line),
        () => now,
      );
      now = 1000;
      for (let i = 0; i < 40; i++) bar.tick(i === 0);
      bar.end();
      expect(lines.at(-1)).to.equal(`[${'#'.repeat(11)}${'.'.repeat(17)}] 40/100 40% · 40/s · ETA 2s · failed 1`);
      expect(formatDuration(75)).to.equal('1m15s');
      expect(formatDuration(3725)).to.equal('1h02m');
    });
  });
});

describe('doctor: table cache advice (unit)', () => {
  it('advises each cache below the tenant tables, and nothing when both hold them', () => {
    expect(tableCacheAdvice({ tables: 30000, tableOpenCache: 40000, tableDefinitionCache: 30000 })).to.deep.equal([]);
    expect(tableCacheAdvice({ tables: 30000, tableOpenCache: 2000, tableDefinitionCache: 400 })).to.deep.equal([
      'table_open_cache is 2000, below the 30000 tables of its tenant databases: tenants not used lately reopen their tables on every request; set it to at least 30000',
      'table_definition_cache is 400, below the 30000 tables of its tenant databases: tenants not used lately reopen their tables on every request; set it to at least 30000',
    ]);
    expect(tableCacheAdvice({ tables: 500, tableOpenCache: 2000, tableDefinitionCache: 400 })).to.have.length(1);
  });
});
