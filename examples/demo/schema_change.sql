-- The schema change made while the workload runs: a new column, then rows that use it. re_dms
-- sees the new column in the stream and adds it to the target table (ALTER TABLE ... ADD COLUMN).
ALTER TABLE customers ADD COLUMN tier varchar(16);
UPDATE customers SET tier = CASE WHEN id % 3 = 0 THEN 'gold' ELSE 'silver' END WHERE id % 4 = 0;
INSERT INTO customers (name, email, tier)
    SELECT 'vip ' || g, 'vip' || g || '@example.com', 'platinum' FROM generate_series(1, 25) AS g;
