-- Demo database for docker-compose: the role the gateway uses, and the demo tables.
CREATE ROLE gatehouse_demo LOGIN PASSWORD 'demo-password-change-me';
CREATE DATABASE demo OWNER gatehouse_demo;
\connect demo gatehouse_demo
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, card_number text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), item text NOT NULL,
  amount numeric(10,2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO customers (name, email, card_number) VALUES
  ('Ada Lovelace', 'ada@example.com', '4111111111111111'), ('Alan Turing', 'alan@example.com', '5500005555555559');
INSERT INTO orders (customer_id, item, amount) VALUES (1, 'analytical engine', 1843.00), (2, 'bombe rotor', 1940.50);
