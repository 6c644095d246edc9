-- pgbench custom script: one transaction of the demo's workload, run by each client in a loop.
-- Every table gets inserts, updates and now and then a delete; each transaction touches at most
-- one existing row per table, tables always in the same order (so clients do not deadlock).
\set r random(1, 100)
\set cents random(100, 99999)
\set day random(0, 58)
BEGIN;

-- customers: a new one, and an update (3 %: a delete) of an existing one
INSERT INTO customers (name, email)
    VALUES ('customer of client ' || :client_id, 'client' || :client_id || '.' || :r || '@example.com')
    RETURNING id AS new_customer \gset
\set some_customer random(1, :new_customer)
\if :r <= 3
DELETE FROM customers WHERE id = :some_customer;
\else
UPDATE customers SET name = 'customer ' || id || ' (updated)' WHERE id = :some_customer;
\endif

-- orders: two new ones, and an update (10 %: a delete) of an existing one
INSERT INTO orders (customer_id, amount) VALUES (:new_customer, :cents / 100.0);
INSERT INTO orders (customer_id, amount) VALUES (:new_customer, :cents / 200.0)
    RETURNING id AS new_order \gset
\set some_order random(1, :new_order)
\if :r <= 10
DELETE FROM orders WHERE id = :some_order;
\else
UPDATE orders SET status = 'shipped', amount = amount + 1, updated_at = now() WHERE id = :some_order;
\endif

-- events (partitioned by month): a new one in January or February, and an existing one
-- updated; 20 %: moved from January to February (a cross-partition UPDATE, which test_decoding
-- shows as a DELETE in one partition and an INSERT in the other); 5 %: deleted
INSERT INTO events (occurred_at, kind, payload)
    VALUES (timestamptz '2024-01-01 00:00+00' + :day * interval '1 day' + random() * interval '1 day',
            'order_created', jsonb_build_object('order', :new_order, 'cents', :cents))
    RETURNING id AS new_event \gset
\set some_event random(1, :new_event)
\if :r > 95
DELETE FROM events WHERE id = :some_event;
\elif :r <= 20
UPDATE events SET occurred_at = occurred_at + interval '31 days', kind = 'moved'
    WHERE id = :some_event AND occurred_at < timestamptz '2024-01-29 00:00+00';
\else
UPDATE events SET kind = 'order_seen' WHERE id = :some_event;
\endif

-- documents: 15 %: a new one with a TOASTed body; always: a new revision of an existing one
-- that leaves `body` alone (the TOAST case); 1 %: a new body; 1 %: a delete
\if :r <= 15
INSERT INTO documents (title, body) VALUES ('document of client ' || :client_id, demo_body(80 + :r));
\endif
SELECT coalesce(max(id), 1) AS max_document FROM documents \gset
\set some_document random(1, :max_document)
\if :r = 50
UPDATE documents SET body = demo_body(100), revision = revision + 1 WHERE id = :some_document;
\elif :r = 51
DELETE FROM documents WHERE id = :some_document;
\else
UPDATE documents SET revision = revision + 1, title = 'revision ' || (revision + 1) WHERE id = :some_document;
\endif

COMMIT;
