-- Demo database for docker-compose, run once by the postgres image on an empty data
-- directory (psql -v ON_ERROR_STOP=1 as the superuser, whose password psql has). Under
-- scram-sha-256 psql cannot switch to another user without that user's password, so
-- everything runs as the superuser, and SET ROLE makes the gateway's role own the tables.
-- The role's password is the container's DEMO_PG_PASSWORD (the one the gateway is given).
\getenv demo_password DEMO_PG_PASSWORD
\if :{?demo_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'DEMO_PG_PASSWORD is not set: the gateway could not log in as gatehouse_demo'; END $$;
\endif
CREATE ROLE gatehouse_demo LOGIN PASSWORD :'demo_password';
CREATE DATABASE demo OWNER gatehouse_demo;
\connect demo
SET ROLE gatehouse_demo;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, card_number text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), item text NOT NULL,
  amount numeric(10,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, email, card_number) VALUES
  ('Ada Lovelace', 'ada@example.com', '4111111111111111'), ('Alan Turing', 'alan@example.com', '5500005555555559');
INSERT INTO orders (customer_id, item, amount) VALUES (1, 'analytical engine', 1843.00), (2, 'bombe rotor', 1940.50);
