/**
 * All the connection layer knows of a tenant: where its database lives and how to log in to it. The names are the
 * org's own columns, so a provisioned org is a TenantDbRef as it is (no copy on the request path).
 */
export interface TenantDbRef {
  /** The tenant's id: the key of its instance and of its sessions' per-tenant cap. */
  id: number;
  /** The `db_servers` row of the MySQL server that holds the database. */
  dbServerId: number;
  dbName: string;
  /** The tenant's own MySQL user: privileges on its database only. */
  dbUser: string;
  /** That user's password, encrypted at rest; decrypted only when an instance is built. */
  dbPasswordEnc: string;
}

/** Where a server is, by its id (the server registry answers it). */
export type ServerEndpoint = (serverId: number) => Promise<{ host: string; port: number }>;
