-- First-start initialisation of the postgres service (docker/compose.yaml).
--
-- The postgres image runs this file with psql, as the superuser, only when its data
-- volume is empty. Passwords are not written here: psql's \getenv (psql 15+) reads
-- them from the container's environment, which compose fills from docker/.env.
--
-- Two databases, each owned by its own login role:
--   airflow  Airflow's metadata database (and the Celery result backend)
--   xinfang  the warehouse (raw, ops, restricted, staging, marts, ... schemas)
-- Owning its database lets each role create schemas (dbt, xinfang.ingest.ddl.sql)
-- and, since PostgreSQL 15, tables in public; neither role is a superuser.

\set ON_ERROR_STOP on

\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv xinfang_password XINFANG_DB_PASSWORD

\if :{?airflow_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'AIRFLOW_DB_PASSWORD is not set in the postgres container'; END $$;
\endif
\if :{?xinfang_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'XINFANG_DB_PASSWORD is not set in the postgres container'; END $$;
\endif

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE xinfang LOGIN PASSWORD :'xinfang_password';

-- Read-only reporting role referenced by src/xinfang/ingest/ddl.sql. That file creates
-- it when missing, which needs CREATEROLE; creating it here lets the xinfang role
-- run without that privilege.
CREATE ROLE xinfang_reporting NOLOGIN;

CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE xinfang OWNER xinfang;

-- Only the owners (and reporting users, for the warehouse) may connect.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE xinfang FROM PUBLIC;
GRANT CONNECT ON DATABASE xinfang TO xinfang_reporting;
