-- The PostgreSQL side of ledger_bench: the same double-entry posting the ledger makes, as a
-- relational schema. Tenant balances, system (revenue) balances and an append-only journal.
-- psql variables: accounts (tenant rows), shards (revenue rows).
CREATE TABLE account (
  id      integer PRIMARY KEY,
  balance bigint  NOT NULL
);
-- Revenue is sharded the way the ledger shards it (one row per shard), so the uniform variant
-- has no single hot revenue row on either side; the hot variant uses shard 0 only.
CREATE TABLE revenue (
  shard   integer PRIMARY KEY,
  balance bigint  NOT NULL
);
CREATE TABLE journal (
  id            bigserial   PRIMARY KEY,
  account_id    integer     NOT NULL,
  revenue_shard integer     NOT NULL,
  amount        bigint      NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO account SELECT i, 10000000000 FROM generate_series(1, :accounts) AS i;
INSERT INTO revenue SELECT s, 0 FROM generate_series(0, :shards - 1) AS s;
VACUUM ANALYZE account;
VACUUM ANALYZE revenue;
CHECKPOINT;
