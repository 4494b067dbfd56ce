-- One posting (a charge: tenant -> revenue) in one transaction: two balance updates and one
-- journal insert, committed with synchronous_commit=on. Uniform: a random tenant of :accounts,
-- the revenue shard that tenant maps to (of :shards).
\set aid random(1, :accounts)
\set shard :aid % :shards
\set amount random(1, 10000)
BEGIN;
UPDATE account SET balance = balance - :amount WHERE id = :aid;
UPDATE revenue SET balance = balance + :amount WHERE shard = :shard;
INSERT INTO journal (account_id, revenue_shard, amount) VALUES (:aid, :shard, :amount);
END;
