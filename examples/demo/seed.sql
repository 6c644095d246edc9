-- A first batch of rows, written once re_dms streams from its slot (changes committed before the
-- slot existed would not be in its stream).
BEGIN;
INSERT INTO customers (name, email)
    SELECT 'customer ' || g, 'customer' || g || '@example.com' FROM generate_series(1, 200) AS g;
INSERT INTO orders (customer_id, amount)
    SELECT 1 + g % 200, (g % 500) + 0.99 FROM generate_series(1, 400) AS g;
INSERT INTO events (occurred_at, kind, payload)
    SELECT timestamptz '2024-01-01 00:00+00' + (g % 59) * interval '1 day' + (g % 24) * interval '1 hour',
           'signup', jsonb_build_object('seed', g)
    FROM generate_series(1, 500) AS g;
INSERT INTO documents (title, body)
    SELECT 'document ' || g, demo_body(80 + g) FROM generate_series(1, 30) AS g;
COMMIT;
