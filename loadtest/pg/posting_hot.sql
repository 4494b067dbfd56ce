-- The hot variant of posting_uniform.sql: every posting goes to tenant 1 and revenue shard 0, so
-- every transaction waits for the row locks of the one before it.
\set aid 1
\set shard 0
\set amount random(1, 10000)
BEGIN;
UPDATE account SET balance = balance - :amount WHERE id = :aid;
UPDATE revenue SET balance = balance + :amount WHERE shard = :shard;
INSERT INTO journal (account_id, revenue_shard, amount) VALUES (:aid, :shard, :amount);
END;
