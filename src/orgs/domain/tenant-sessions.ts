/**
 * Ending a tenant's sessions on one server. Sessions are multiplexed across tenants (COM_CHANGE_USER): an id read
 * from the process list may belong to another tenant a moment later, so a kill must be decided by who the session is
 * authenticated as when it is killed, not when it was listed.
 *
 * MariaDB does that in the server: `KILL CONNECTION USER 'name'` picks the sessions by their current user under the
 * server's own thread-list lock, so no other tenant's session is ever hit. MySQL has no KILL USER: each listed id is
 * re-checked (`USER` in the process list) right before its KILL; a session can still change hands in the one round
 * trip between the two (residual race, only on MySQL).
 */
import { QueryTypes, type Sequelize } from 'sequelize';
import { serverVersion } from '../../platform/db/sequelize.js';

export interface KillHooks {
  /** Test seam: called with the sessions listed as the tenant's, before any is killed (a session may change hands). */
  listed?: (sessionIds: number[]) => void | Promise<void>;
}

/** Ends every session authenticated as `user` at the moment of the kill; answers how many were listed. */
export async function killSessionsOf(admin: Sequelize, user: string, hooks: KillHooks = {}): Promise<number> {
  const listed = (
    await admin.query<{ id: number }>('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = :user', {
      replacements: { user },
      type: QueryTypes.SELECT,
    })
  ).map((s) => Number(s.id));
  await hooks.listed?.(listed);
  if (/mariadb/i.test(await serverVersion(admin))) {
    await admin.query(`KILL CONNECTION USER ${admin.escape(user)}`);
    return listed.length;
  }
  for (const id of listed) {
    const [still] = await admin.query('SELECT ID FROM information_schema.PROCESSLIST WHERE ID = :id AND USER = :user', {
      replacements: { id, user },
      type: QueryTypes.SELECT,
    });
    if (still) await admin.query(`KILL CONNECTION ${id}`).catch(() => undefined); // ended meanwhile
  }
  return listed.length;
}
