-- The demo's source schema (database `demo`). Created before re_dms starts: test_decoding does
-- not stream DDL, and re_dms creates each target table when it first sees a change to it.

-- Two plain tables with primary keys.
CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    email      varchar(120) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL,
    amount      numeric(10,2) NOT NULL,
    status      varchar(20) NOT NULL DEFAULT 'new',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A range-partitioned table, one partition per month. test_decoding names the partition a row
-- is in (events_2024_01, events_2024_02); re_dms loads both into one target table, "events".
CREATE TABLE events (
    id          bigserial,
    occurred_at timestamptz NOT NULL,
    kind        text NOT NULL,
    payload     jsonb,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE events_2024_01 PARTITION OF events
    FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2024-02-01 00:00+00');
CREATE TABLE events_2024_02 PARTITION OF events
    FOR VALUES FROM ('2024-02-01 00:00+00') TO ('2024-03-01 00:00+00');

-- A table whose `body` (a few kB) is TOASTed: stored out of line, uncompressed. An UPDATE that
-- leaves `body` alone makes test_decoding print it as `unchanged-toast-datum`, which re_dms turns
-- into a partial update of the other columns.
CREATE TABLE documents (
    id       bigserial PRIMARY KEY,
    title    text NOT NULL,
    revision integer NOT NULL DEFAULT 1,
    body     text NOT NULL
);
ALTER TABLE documents ALTER COLUMN body SET STORAGE EXTERNAL;

-- n * 32 characters of random hex: a body of 2.5 to 4 kB.
CREATE FUNCTION demo_body(n integer) RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(md5(random()::text || i::text), '') FROM generate_series(1, n) AS i
$$;
