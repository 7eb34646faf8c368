-- Sample data for the "kennel" database (see schema.sql).
--
-- psql script (uses psql variables and meta-commands). Run on a database that
-- has just been created from schema.sql:
--
--   psql -v ON_ERROR_STOP=1 -v scale=1 -f local/seed/data.sql
--
-- Variables:
--   scale              integer >= 1, default 1. Roughly:
--                        customers        1000 * scale
--                        pets             ~1.5 per customer
--                        bookings         ~4 per pet
--                        payments         ~1 per booking (none for pending ones)
--                        invoices         1 per booking
--                        audit_logs       ~audit_per_booking per booking
--                        session_logs     ~5 per customer (+ some staff sessions)
--                        kennels          30 * scale (scale sites of 30 runs)
--   audit_per_booking  integer >= 0, default 10.
--
-- The data is pseudo-random but deterministic: setseed() fixes the random()
-- sequence. Timestamps are relative to an anchor, seed_now = the start of the
-- current UTC day (date_trunc('day', now())): created_at spreads over the ~2
-- years before it, bookings run up to ~3 months after it, updated_at >=
-- created_at and no created_at/updated_at is later than the anchor (so any
-- later UPDATE, which sets clock_timestamp(), is newer than all seeded rows).
-- Two loads with the same scale on the same UTC day are identical (ids,
-- names, amounts, statuses, timestamps); on another day every timestamp and
-- date is shifted by whole days, everything else is the same. Needs a UTF8
-- database (names include accents, Cyrillic, CJK and an emoji).
-- Everything is loaded in a single transaction (each table is ANALYZEd as
-- soon as it is filled, so the following generator queries plan sensibly),
-- then the whole database is ANALYZEd.

\set ON_ERROR_STOP on

\if :{?scale}
\else
  \set scale 1
\endif
\if :{?audit_per_booking}
\else
  \set audit_per_booking 10
\endif

SET client_encoding = 'UTF8';
SET search_path = public;
SET client_min_messages = warning;
SET work_mem = '64MB';
SET synchronous_commit = off;
SET TimeZone = 'UTC';
-- JIT only slows these one-shot generator queries down (compile time >> run time).
SET jit = off;

-- Validate the variables (a non-integer makes the cast fail).
SELECT (:'scale')::int >= 1 AND (:'audit_per_booking')::int >= 0 AS seed_args_ok \gset
\if :seed_args_ok
\else
  \echo 'data.sql: scale must be an integer >= 1 and audit_per_booking an integer >= 0'
  DO $$ BEGIN RAISE EXCEPTION 'data.sql: invalid scale / audit_per_booking'; END $$;
  \quit
\endif

-- Refuse to load twice.
SELECT NOT EXISTS (SELECT 1 FROM customers) AND NOT EXISTS (SELECT 1 FROM kennel_sizes) AS seed_db_empty \gset
\if :seed_db_empty
\else
  \echo 'data.sql: the kennel tables are not empty; load data.sql into a fresh schema.sql database'
  DO $$ BEGIN RAISE EXCEPTION 'data.sql: database already seeded'; END $$;
  \quit
\endif

\echo seeding kennel database: scale=:scale audit_per_booking=:audit_per_booking

BEGIN;

-- Time anchor (see header), as SQL literals for :seed_now / :seed_today.
SELECT format('(%L::timestamptz)', date_trunc('day', now())) AS seed_now,
       format('(%L::date)', date_trunc('day', now())::date) AS seed_today \gset

SELECT setseed(0.42) \gset seed_

-- pick(array): a uniformly random element. Temporary: gone at session end.
CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text
LANGUAGE sql VOLATILE AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;

-- ---------------------------------------------------------------------------
-- kennel_sizes (lookup)
-- ---------------------------------------------------------------------------

INSERT INTO kennel_sizes (code, description, max_weight_kg) VALUES
  ('S',     'Small — cats, toy & small dogs',            10.0),
  ('M',     'Medium run',                                  25.0),
  ('L',     'Large run with outdoor access',               45.0),
  ('XL',    'Extra-large run for giant breeds',            90.0),
  ('SUITE', 'Luxury suite · heated floor, webcam, sofa',  NULL);

-- ---------------------------------------------------------------------------
-- kennels: scale sites x 30 runs
-- ---------------------------------------------------------------------------

INSERT INTO kennels (code, site, size_code, nightly_rate, features, is_active, created_at, updated_at)
SELECT code, site, size_code,
       round(CASE size_code WHEN 'S' THEN 22 WHEN 'M' THEN 28 WHEN 'L' THEN 35 WHEN 'XL' THEN 45 ELSE 75 END
             * site_factor, 2),
       features, is_active, created_at,
       created_at + CASE WHEN r_upd < 0.3 THEN r_upd2 * (:seed_now - created_at) ELSE interval '0' END
FROM (
  SELECT 'K' || lpad(s::text, 4, '0') || '-' || lpad(i::text, 2, '0') AS code,
         (ARRAY['Bristol', 'Manchester', 'Leeds', 'Edinburgh', 'Cardiff', 'Brighton',
                'Norwich', 'York', 'Exeter', 'Belfast', 'Glasgow', 'Oxford'])[1 + (s - 1) % 12]
           || CASE WHEN s > 12 THEN ' #' || (1 + (s - 1) / 12) ELSE '' END AS site,
         CASE WHEN r_size < 0.30 THEN 'S' WHEN r_size < 0.65 THEN 'M' WHEN r_size < 0.85 THEN 'L'
              WHEN r_size < 0.95 THEN 'XL' ELSE 'SUITE' END AS size_code,
         0.9 + ((s * 37) % 31) / 100.0 AS site_factor,
         array_remove(ARRAY[
           CASE WHEN r_f1 < 0.5 THEN 'heated' END,
           CASE WHEN r_f2 < 0.4 THEN 'outdoor_run' END,
           CASE WHEN r_f3 < 0.2 OR r_size >= 0.95 THEN 'webcam' END,
           CASE WHEN r_f4 < 0.3 THEN 'quiet_zone' END], NULL) AS features,
         r_active >= 0.03 AS is_active,
         :seed_now - interval '730 days' + r_created * interval '45 days' AS created_at,
         r_upd, r_upd2
  FROM (
    SELECT s, i, random() AS r_size, random() AS r_f1, random() AS r_f2, random() AS r_f3,
           random() AS r_f4, random() AS r_active, random() AS r_created, random() AS r_upd,
           random() AS r_upd2
    FROM generate_series(1, :scale) AS s
    CROSS JOIN generate_series(1, 30) AS i
    ORDER BY s, i
  ) raw
) k
ORDER BY code;

ANALYZE kennels;

-- ---------------------------------------------------------------------------
-- customers
-- ---------------------------------------------------------------------------

INSERT INTO customers (first_name, last_name, email, phone, address_line1, city, postcode,
                       country_code, marketing_opt_in, notes, created_at, updated_at)
SELECT first_name, last_name,
       lower(translate(first_name || '.' || last_name,
             'áàâäãåçčéèêëíìîïñóòôöõøúùûüýÿłśźżćńšÁÀÂÄÃÅÇČÉÈÊËÍÌÎÏÑÓÒÔÖÕØÚÙÛÜÝŁŚŹŻĆŃŠ'' -',
             'aaaaaacceeeeiiiinoooooouuuuyylszzcnsAAAAAACCEEEEIIIINOOOOOOUUUUYLSZZCNS'))
         || '.' || g || '@' || domain AS email,
       '+44 7' || substr(digits, 1, 3) || ' ' || substr(digits, 4, 6) AS phone,
       address_line1, city, postcode, country_code, marketing_opt_in, notes,
       created_at,
       created_at + CASE WHEN r_upd < 0.5 THEN r_upd2 * (:seed_now - created_at) ELSE interval '0' END
FROM (
  SELECT g,
         pg_temp.pick(ARRAY['Olivia', 'Amelia', 'Isla', 'Ava', 'Mia', 'Sophie', 'Grace', 'Emily',
                            'Freya', 'Hannah', 'Zoë', 'Chloé', 'Aoife', 'Siobhán', 'Renée', 'Inès',
                            'Oliver', 'George', 'Harry', 'Noah', 'Jack', 'Leo', 'Oscar', 'Charlie',
                            'James', 'Thomas', 'José', 'Łukasz', 'Søren', 'Björn', 'Ciarán', 'Rhys',
                            'Priya', 'Aarav', 'Mohammed', 'Fatima', 'Wei', 'Yuki', 'Mateo', 'Anaïs']) AS first_name,
         pg_temp.pick(ARRAY['Smith', 'Jones', 'Taylor', 'Brown', 'Williams', 'Wilson', 'Johnson',
                            'Davies', 'Evans', 'Thomas', 'Roberts', 'Walker', 'Wright', 'Thompson',
                            'White', 'Hughes', 'Edwards', 'Green', 'Hall', 'Wood', 'O''Brien',
                            'O''Connor', 'MacDonald', 'Müller', 'García', 'Núñez', 'Ødegaard',
                            'Kowalski', 'Wiśniewska', 'Dubois', 'Lefèvre', 'Patel', 'Khan', 'Singh',
                            'Chen', 'Nguyen', 'Rossi', 'Ferreira', 'Jankovič', 'Van der Berg']) AS last_name,
         pg_temp.pick(ARRAY['example.com', 'example.org', 'example.net', 'mail.example.co.uk']) AS domain,
         lpad(floor(random() * 1000000000)::bigint::text, 9, '0') AS digits,
         (1 + floor(random() * 250))::int || ' '
           || pg_temp.pick(ARRAY['High Street', 'Station Road', 'Church Lane', 'Mill Lane', 'Victoria Road',
                                 'Green Lane', 'Manor Road', 'Park Avenue', 'Kingsway', 'Queen''s Road',
                                 'Brunswick Square', 'The Crescent', 'Orchard Close', 'Château Close',
                                 'Ffordd y Môr', 'Sráid na Trá']) AS address_line1,
         pg_temp.pick(ARRAY['London', 'Bristol', 'Manchester', 'Leeds', 'Glasgow', 'Edinburgh', 'Cardiff',
                            'Belfast', 'Brighton', 'York', 'Norwich', 'Bath', 'Oxford', 'Cambridge',
                            'Exeter', 'Aberystwyth']) AS city,
         chr(65 + floor(random() * 26)::int) || chr(65 + floor(random() * 26)::int)
           || (1 + floor(random() * 29))::int || ' ' || floor(random() * 10)::int
           || chr(65 + floor(random() * 26)::int) || chr(65 + floor(random() * 26)::int) AS postcode,
         CASE WHEN r_country < 0.95 THEN 'GB'
              ELSE pg_temp.pick(ARRAY['IE', 'FR', 'DE', 'ES', 'NL']) END AS country_code,
         random() < 0.35 AS marketing_opt_in,
         CASE WHEN r_notes < 0.15 THEN
           pg_temp.pick(ARRAY['Prefers morning drop-off', 'Call before 9am, not after 8pm',
                              'VIP — long-standing customer', 'Pays by invoice', 'Spare key on file',
                              'Second contact: neighbour (see file)', 'Speaks French & Spanish',
                              'Requested no photos on social media'])
         END AS notes,
         created_at, r_upd, r_upd2
  FROM (
    SELECT g, random() AS r_country, random() AS r_notes, random() AS r_upd, random() AS r_upd2,
           :seed_now - random() * interval '730 days' AS created_at
    FROM generate_series(1, :scale * 1000) AS g
    ORDER BY g
  ) raw
) c
ORDER BY created_at, g;

ANALYZE customers;

-- ---------------------------------------------------------------------------
-- pets: 1-3 per customer (~1.5)
-- ---------------------------------------------------------------------------

INSERT INTO pets (customer_id, name, species, breed, sex, date_of_birth, weight_kg, microchip_id,
                  vaccinated_until, medical_notes, created_at, updated_at)
SELECT customer_id, name, species,
       CASE species
         WHEN 'dog' THEN pg_temp.pick(ARRAY['Labrador Retriever', 'Cocker Spaniel', 'French Bulldog',
                                            'Border Collie', 'Dachshund', 'Staffordshire Bull Terrier',
                                            'Golden Retriever', 'Cockapoo', 'German Shepherd',
                                            'Jack Russell Terrier', 'Whippet', 'Bernese Mountain Dog',
                                            'Shih Tzu', 'Mixed breed'])
         WHEN 'cat' THEN pg_temp.pick(ARRAY['Domestic Shorthair', 'British Shorthair', 'Maine Coon',
                                            'Ragdoll', 'Siamese', 'Bengal', 'Sphynx', 'Persian'])
         WHEN 'rabbit' THEN pg_temp.pick(ARRAY['Netherland Dwarf', 'Holland Lop', 'Lionhead', 'Rex'])
         ELSE pg_temp.pick(ARRAY['Guinea pig', 'Ferret', 'Tortoise', 'Chinchilla'])
       END AS breed,
       CASE WHEN r_sex < 0.48 THEN 'M' WHEN r_sex < 0.96 THEN 'F' ELSE 'U' END AS sex,
       (created_at - (60 + r_age * 4000) * interval '1 day')::date AS date_of_birth,
       round((CASE species WHEN 'dog' THEN 3 + r_weight * 42 WHEN 'cat' THEN 2.5 + r_weight * 5
                           WHEN 'rabbit' THEN 1 + r_weight * 3 ELSE 0.3 + r_weight * 4 END)::numeric, 2),
       CASE WHEN r_chip < 0.8 THEN
         '826' || lpad((((customer_id * 4 + k) * 48271) % 1000000000000)::text, 12, '0')
       END AS microchip_id,
       :seed_today + (floor(r_vacc * 500)::int - 120) AS vaccinated_until,
       CASE WHEN r_med < 0.2 THEN
         pg_temp.pick(ARRAY['Diabetic — insulin twice daily', 'Hip dysplasia, gentle exercise only',
                            'Grain-free diet', 'Anxious around other dogs', 'Allergic to chicken',
                            'Eye drops at 08:00 & 20:00', 'Senior: soft food only',
                            'Escape artist! Double-check latches', 'Epileptic — see vet letter'])
       END AS medical_notes,
       created_at,
       created_at + CASE WHEN r_upd < 0.4 THEN r_upd2 * (:seed_now - created_at) ELSE interval '0' END
FROM (
  SELECT raw.*,
         CASE WHEN r_species < 0.68 THEN 'dog' WHEN r_species < 0.95 THEN 'cat'
              WHEN r_species < 0.99 THEN 'rabbit' ELSE 'other' END AS species
  FROM (
    SELECT c.id AS customer_id, k,
           pg_temp.pick(ARRAY['Bella', 'Max', 'Luna', 'Charlie', 'Daisy', 'Milo', 'Coco', 'Teddy', 'Rosie',
                              'Alfie', 'Poppy', 'Bailey', 'Ruby', 'Oscar', 'Willow', 'Buster', 'Nala',
                              'Simba', 'Biscuit', 'Pickle', 'Tiger', 'Smokey', 'Mr. Whiskers', 'O''Malley',
                              'Zoë', 'Chloé', 'Renée', 'Noël', 'Björn', 'Åsa', 'Müsli', 'Señor Bigotes',
                              'Ñandú', 'Pépé', 'Lulú', 'François', 'Jürgen', 'Łatka', 'Źdźbło', 'Фунтик',
                              'Мурка', '小白', 'ハチ', 'Ziggy 🐾']) AS name,
           c.created_at + power(random(), 2) * (:seed_now - c.created_at) AS created_at,
           random() AS r_species, random() AS r_sex, random() AS r_age, random() AS r_weight,
           random() AS r_chip, random() AS r_vacc, random() AS r_med, random() AS r_upd, random() AS r_upd2
    FROM (
      SELECT id, created_at, 1 + (random() < 0.45)::int + (random() < 0.05)::int AS n
      FROM customers
      ORDER BY id
    ) c
    CROSS JOIN LATERAL generate_series(1, c.n) AS k
  ) raw
) p
ORDER BY created_at, customer_id, k;

ANALYZE pets;

-- ---------------------------------------------------------------------------
-- bookings: 2-6 per pet (~4)
-- ---------------------------------------------------------------------------

SELECT count(*) AS seed_kennel_count FROM kennels \gset

INSERT INTO bookings (pet_id, kennel_id, status, check_in, check_out, price, notes, created_at, updated_at)
WITH raw AS MATERIALIZED (
  SELECT p.id AS pet_id, j,
         p.created_at + random() * (:seed_now - p.created_at) AS created_at,
         1 + floor(random() * :seed_kennel_count)::int AS kennel_rn,
         random() AS r_lead, random() AS r_nights, random() AS r_status, random() AS r_upd,
         random() AS r_note, random() AS r_disc
  FROM (
    SELECT id, created_at, 2 + floor(random() * 5)::int AS n
    FROM pets
    ORDER BY id
  ) p
  CROSS JOIN LATERAL generate_series(1, p.n) AS j
),
k AS MATERIALIZED (
  SELECT id, nightly_rate, row_number() OVER (ORDER BY id) AS rn FROM kennels
),
b AS (
  SELECT raw.*, k.id AS kennel_id, k.nightly_rate,
         (raw.created_at + (1 + power(r_lead, 2) * 90) * interval '1 day')::date AS check_in,
         1 + floor(power(r_nights, 2) * 14)::int AS nights
  FROM raw JOIN k ON k.rn = raw.kennel_rn
),
s AS (
  SELECT b.*,
         check_in + nights AS check_out,
         CASE
           WHEN check_in + nights < :seed_today THEN
             CASE WHEN r_status < 0.06 THEN 'cancelled' WHEN r_status < 0.08 THEN 'no_show' ELSE 'completed' END
           WHEN check_in < :seed_today THEN  -- nobody has checked in yet today at 00:00
             CASE WHEN r_status < 0.04 THEN 'cancelled' ELSE 'checked_in' END
           ELSE
             CASE WHEN r_status < 0.05 THEN 'cancelled' WHEN r_status < 0.25 THEN 'pending' ELSE 'confirmed' END
         END AS status
  FROM b
),
u AS (
  -- when the booking last changed (status transition); spread into the past
  -- instead of piling up on the anchor if that moment is still to come
  SELECT s.*,
         CASE status
           WHEN 'completed'  THEN check_out + interval '10 hours' + r_upd * interval '8 hours'
           WHEN 'no_show'    THEN check_in + interval '20 hours'
           WHEN 'checked_in' THEN check_in + interval '9 hours' + r_upd * interval '8 hours'
           WHEN 'cancelled'  THEN created_at + r_upd * (check_in - created_at)
           WHEN 'confirmed'  THEN created_at + r_upd * interval '3 days'
           ELSE created_at
         END AS upd
  FROM s
)
SELECT pet_id, kennel_id, status, check_in, check_out,
       round(nightly_rate * nights * CASE WHEN r_disc < 0.1 THEN 0.9 ELSE 1 END, 2) AS price,
       CASE WHEN r_note < 0.1 THEN
         (ARRAY['Owner collecting late (after 6pm)', 'Bring own food', 'Shares run with sibling',
                'Groom before pick-up', 'Medication supplied by owner', 'Late check-in — flight lands 22:00',
                'Extra walk requested', 'Birthday stay 🎂'])[1 + floor(r_note * 80)::int]
       END AS notes,
       created_at,
       CASE WHEN upd > :seed_now THEN created_at + r_upd * (:seed_now - created_at)
            ELSE greatest(created_at, upd) END AS updated_at
FROM u
ORDER BY created_at, pet_id, j;

ANALYZE bookings;

-- ---------------------------------------------------------------------------
-- payments: none for pending bookings, ~35% (refunds) for cancelled, ~96% otherwise
-- ---------------------------------------------------------------------------

INSERT INTO payments (booking_id, amount, method, status, paid_at, provider_ref, created_at, updated_at)
SELECT booking_id, amount, method, status, paid_at, provider_ref, created_at,
       CASE status
         WHEN 'refunded'  THEN greatest(paid_at, b_updated)
         WHEN 'succeeded' THEN paid_at
         WHEN 'failed'    THEN least(:seed_now, created_at + interval '1 minute')
         ELSE created_at
       END AS updated_at
FROM (
  SELECT booking_id, amount, method, status, provider_ref, created_at, b_updated,
         CASE WHEN status IN ('succeeded', 'refunded')
              THEN least(:seed_now, created_at + r_delay * interval '2 minutes') END AS paid_at
  FROM (
    SELECT booking_id, b_updated, r_delay,
           price + round(price * 0.2, 2) AS amount,
           CASE WHEN r_method < 0.72 THEN 'card' WHEN r_method < 0.85 THEN 'bank_transfer'
                WHEN r_method < 0.96 THEN 'cash' ELSE 'voucher' END AS method,
           CASE WHEN b_status = 'cancelled' THEN 'refunded'
                WHEN r_status < 0.02 THEN 'failed'
                WHEN b_status IN ('confirmed', 'checked_in') AND r_status < 0.08 THEN 'pending'
                ELSE 'succeeded' END AS status,
           CASE WHEN r_method < 0.72 THEN 'ch_' || substr(h, 1, 24)
                WHEN r_method < 0.85 THEN 'BT' || upper(substr(h, 1, 10))
                WHEN r_method < 0.96 THEN NULL
                ELSE 'V-' || upper(substr(h, 1, 8)) END AS provider_ref,
           b_created + r_delay * least(interval '3 days', :seed_now - b_created) AS created_at
    FROM (
      SELECT id AS booking_id, status AS b_status, price, created_at AS b_created, updated_at AS b_updated,
             random() AS r_pay, random() AS r_method, random() AS r_status, random() AS r_delay,
             md5(random()::text) AS h
      FROM bookings
      ORDER BY id
    ) raw
    WHERE b_status <> 'pending'
      AND r_pay < CASE WHEN b_status = 'cancelled' THEN 0.35 ELSE 0.96 END
  ) x
) y
ORDER BY created_at, booking_id;

ANALYZE payments;

-- ---------------------------------------------------------------------------
-- invoices: one per booking
-- ---------------------------------------------------------------------------

INSERT INTO invoices (customer_id, booking_id, subtotal, tax, total, currency, status,
                      issued_at, due_at, created_at, updated_at)
SELECT customer_id, booking_id, subtotal, tax, subtotal + tax, currency, status,
       issued_at, due_at, issued_at,
       greatest(issued_at, least(:seed_now,
         CASE status
           WHEN 'paid'    THEN paid_at
           WHEN 'void'    THEN b_updated
           WHEN 'overdue' THEN due_at
           ELSE issued_at
         END)) AS updated_at
FROM (
  SELECT p.customer_id, b.id AS booking_id, b.price AS subtotal, round(b.price * 0.2, 2) AS tax,
         CASE WHEN c.country_code IN ('IE', 'FR', 'DE', 'ES', 'NL') THEN 'EUR' ELSE 'GBP' END AS currency,
         CASE WHEN b.status = 'pending' THEN 'draft'
              WHEN b.status = 'cancelled' THEN 'void'
              WHEN pay.status = 'succeeded' THEN 'paid'
              WHEN b.created_at + interval '14 days' < :seed_now THEN 'overdue'
              ELSE 'open' END AS status,
         b.created_at AS issued_at, b.created_at + interval '14 days' AS due_at,
         b.updated_at AS b_updated, pay.paid_at
  FROM bookings b
  JOIN pets p ON p.id = b.pet_id
  JOIN customers c ON c.id = p.customer_id
  LEFT JOIN payments pay ON pay.booking_id = b.id
) i
ORDER BY issued_at, booking_id;

ANALYZE invoices;

-- ---------------------------------------------------------------------------
-- audit_logs: ~audit_per_booking events per booking, in time order.
-- Per booking: booking.created, invoice.issued, payment.<status>, the final
-- status transition, and filler events; "stay" events (feeding, medication,
-- photos, cleaning) only for bookings whose stay has started and timed during
-- the stay, the others between booking creation and check-in (or cancellation).
-- ---------------------------------------------------------------------------

INSERT INTO audit_logs (actor, action, entity, entity_id, details, created_at)
WITH src AS MATERIALIZED (
  SELECT b.id AS booking_id, b.pet_id, b.kennel_id, p.customer_id, pay.id AS payment_id,
         pay.amount, pay.status AS payment_status, coalesce(pay.paid_at, pay.updated_at) AS payment_at,
         inv.id AS invoice_id, inv.number AS invoice_number, inv.issued_at AS invoice_at,
         b.status, b.updated_at AS status_at, b.created_at AS t0,
         CASE WHEN b.status = 'cancelled' THEN b.updated_at
              ELSE least(:seed_now, b.check_in::timestamptz) END AS pre_to,
         b.check_in + interval '8 hours' AS stay_from,
         least(:seed_now, b.check_out + interval '10 hours') AS stay_to,
         round(:audit_per_booking * (0.6 + 0.8 * random()))::int AS n
  FROM bookings b
  JOIN pets p ON p.id = b.pet_id
  LEFT JOIN payments pay ON pay.booking_id = b.id
  LEFT JOIN invoices inv ON inv.booking_id = b.id
  ORDER BY b.id
),
ev AS (
  SELECT src.*, e.k, random() AS r_actor, random() AS r_t, random() AS r_via,
         CASE
           WHEN e.k = 1 THEN 'booking.created'
           WHEN e.k = 2 AND invoice_id IS NOT NULL THEN 'invoice.issued'
           WHEN e.k = 3 AND payment_id IS NOT NULL THEN 'payment.' || payment_status
           WHEN e.k = src.n AND src.status IN ('completed', 'cancelled', 'checked_in', 'no_show')
             THEN 'booking.' || src.status
           WHEN src.status IN ('checked_in', 'completed') THEN
             pg_temp.pick(ARRAY['booking.viewed', 'booking.viewed', 'booking.updated', 'booking.note_added',
                                'pet.viewed', 'pet.updated', 'customer.viewed',
                                'booking.feeding_logged', 'booking.feeding_logged', 'booking.medication_given',
                                'booking.photo_uploaded', 'kennel.cleaned'])
           ELSE
             pg_temp.pick(ARRAY['booking.viewed', 'booking.viewed', 'booking.updated', 'booking.note_added',
                                'pet.viewed', 'pet.updated', 'customer.viewed'])
         END AS action
  FROM src
  CROSS JOIN LATERAL generate_series(1, src.n) AS e(k)
)
SELECT CASE
         WHEN action = 'invoice.issued' OR action LIKE 'payment.%' THEN 'system'
         WHEN r_actor < 0.3 AND action NOT IN ('kennel.cleaned', 'booking.completed', 'booking.checked_in',
                                              'booking.no_show', 'booking.feeding_logged',
                                              'booking.medication_given')
           THEN 'customer:' || customer_id
         ELSE pg_temp.pick(ARRAY['staff:amelia.k', 'staff:ben.o', 'staff:chloé.m', 'staff:dev.p',
                                 'staff:eilidh.r', 'staff:farid.h', 'staff:grace.l', 'staff:hamish.w'])
       END AS actor,
       action,
       split_part(action, '.', 1) AS entity,
       CASE split_part(action, '.', 1)
         WHEN 'booking' THEN booking_id WHEN 'pet' THEN pet_id WHEN 'customer' THEN customer_id
         WHEN 'kennel' THEN kennel_id WHEN 'invoice' THEN invoice_id WHEN 'payment' THEN payment_id
       END AS entity_id,
       CASE
         WHEN action = 'invoice.issued' THEN jsonb_build_object('number', invoice_number)
         WHEN action LIKE 'payment.%' THEN jsonb_build_object('amount', amount)
         WHEN action IN ('booking.completed', 'booking.cancelled', 'booking.checked_in', 'booking.no_show')
           THEN jsonb_build_object('to', status)
         WHEN action = 'booking.updated' THEN jsonb_build_object('fields', jsonb_build_array('notes'))
         ELSE jsonb_build_object('via', (ARRAY['web', 'app', 'desk', 'api'])[1 + floor(r_via * 4)::int])
       END AS details,
       CASE
         WHEN k = 1 THEN t0
         WHEN action = 'invoice.issued' THEN invoice_at
         WHEN action LIKE 'payment.%' THEN payment_at
         WHEN k = n AND action IN ('booking.completed', 'booking.cancelled', 'booking.checked_in',
                                   'booking.no_show') THEN status_at
         WHEN action IN ('booking.feeding_logged', 'booking.medication_given', 'booking.photo_uploaded',
                         'kennel.cleaned') THEN stay_from + r_t * (stay_to - stay_from)
         ELSE t0 + r_t * (pre_to - t0)
       END AS created_at
FROM ev
ORDER BY created_at, booking_id, k;

-- ---------------------------------------------------------------------------
-- session_logs: 3-7 per customer (~5) plus staff sessions, in time order
-- ---------------------------------------------------------------------------

INSERT INTO session_logs (customer_id, staff_user, ip, user_agent, created_at)
SELECT customer_id, staff_user,
       CASE WHEN r_v6 < 0.12 THEN '2a00:23c0::'::inet + floor(r_ip * 1e12)::bigint
            ELSE '1.0.0.0'::inet + floor(r_ip * 3690987520)::bigint END AS ip,
       pg_temp.pick(ARRAY[
         'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
         'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
         'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
         'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36',
         'Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0',
         'KennelApp/3.4.1 (iOS 17.5; iPhone15,2)',
         'KennelApp/3.4.0 (Android 14; SM-S918B)']) AS user_agent,
       created_at
FROM (
  SELECT c.id AS customer_id, NULL::text AS staff_user,
         c.created_at + random() * (:seed_now - c.created_at) AS created_at, random() AS r_v6, random() AS r_ip
  FROM (
    SELECT id, created_at, 3 + floor(random() * 5)::int AS n
    FROM customers
    ORDER BY id
  ) c
  CROSS JOIN LATERAL generate_series(1, c.n) AS k
  UNION ALL
  SELECT NULL, pg_temp.pick(ARRAY['amelia.k', 'ben.o', 'chloé.m', 'dev.p', 'eilidh.r', 'farid.h',
                                  'grace.l', 'hamish.w']),
         :seed_now - random() * interval '730 days', random(), random()
  FROM generate_series(1, :scale * 250)
) s
ORDER BY created_at, customer_id;

COMMIT;

ANALYZE;

\echo seeded kennel database: scale=:scale
